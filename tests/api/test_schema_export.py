"""The committed SDL and union map are what the code serves; regenerate with `make schema`."""

import json

from graphql_schema.schema import (
    POSSIBLE_TYPES_PATH,
    SDL_PATH,
    export_possible_types,
    export_sdl,
    possible_types,
)


def test_schema_graphql_matches_the_code() -> None:
    assert SDL_PATH.read_text() == export_sdl(), "schema.graphql drifted: run `make schema`"


def test_possible_types_json_matches_the_code() -> None:
    committed = POSSIBLE_TYPES_PATH.read_text()

    assert committed == export_possible_types(), "possible-types.json drifted: run `make schema`"


def test_possible_types_lists_every_union_and_interface_with_its_members() -> None:
    committed = json.loads(POSSIBLE_TYPES_PATH.read_text())

    # given the schema's abstract types, as the committed SDL spells them
    sdl = SDL_PATH.read_text()
    abstract = {
        line.split()[1] for line in sdl.splitlines() if line.startswith(("union ", "interface "))
    }

    # then each is in the map, with the object types a fragment on it may match
    assert set(committed) == abstract
    assert "InsufficientCredits" in committed["RunGeneratorResult"]
    assert committed == possible_types()
