"""The schema, with the extensions every deployment runs."""

from __future__ import annotations

from pathlib import Path

import strawberry
from strawberry.extensions import MaskErrors
from strawberry.schema.config import StrawberryConfig

from graphql_schema.documents import DocumentCache, Documents
from graphql_schema.errors import is_unexpected
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query
from graphql_schema.results import Error

SDL_PATH = Path(__file__).with_name("schema.graphql")
MASKED_MESSAGE = "Unexpected error."


def create_schema(*, document_cache_size: int = 256) -> strawberry.Schema:
    # Extensions are factories: one instance per operation, nothing shared across requests.
    extensions = [
        lambda: MaskErrors(should_mask_error=is_unexpected, error_message=MASKED_MESSAGE),
    ]
    if document_cache_size:
        documents = Documents(maxsize=document_cache_size)
        extensions.append(lambda: DocumentCache(documents))
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[Error],
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
    )


def export_sdl() -> str:
    return create_schema().as_str() + "\n"


def main() -> None:
    SDL_PATH.write_text(export_sdl())
    print(f"wrote {SDL_PATH}")


if __name__ == "__main__":
    main()
