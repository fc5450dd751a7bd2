"""The committed SDL is what the code serves; regenerate with `make schema`."""

from graphql_schema.schema import SDL_PATH, export_sdl


def test_schema_graphql_matches_the_code() -> None:
    assert SDL_PATH.read_text() == export_sdl(), "schema.graphql drifted: run `make schema`"
