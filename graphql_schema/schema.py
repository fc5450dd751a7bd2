"""The schema, with the extensions every deployment runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig

from graphql_schema.documents import DocumentCache, Documents
from graphql_schema.masking import MASKED_MESSAGE, MaskUnexpectedErrors
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query
from graphql_schema.results import Error
from graphql_schema.subscriptions import LiveUpdates

SDL_PATH = Path(__file__).with_name("schema.graphql")
__all__ = ["MASKED_MESSAGE", "create_schema"]


def create_schema(
    *,
    document_cache_size: int = 256,
    extensions: Sequence[Callable[[], SchemaExtension]] = (),
    observers: Sequence[Callable[[], SchemaExtension]] = (),
    field_suggestions: bool = True,
) -> strawberry.Schema:
    """``extensions``: limits and rate limits; ``observers``: metrics (from the app factory)."""
    # Extensions are factories: one instance per operation, nothing shared across requests.
    # Observers come after the masking, so they see errors before they are masked.
    factories: list[Callable[[], SchemaExtension]] = [
        MaskUnexpectedErrors,
        *observers,
        *extensions,
    ]
    if document_cache_size:
        documents = Documents(maxsize=document_cache_size)
        factories.append(lambda: DocumentCache(documents))
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=LiveUpdates,
        types=[Error],
        extensions=factories,
        config=StrawberryConfig(
            auto_camel_case=True, disable_field_suggestions=not field_suggestions
        ),
    )


def export_sdl() -> str:
    return create_schema().as_str() + "\n"


def main() -> None:
    SDL_PATH.write_text(export_sdl())
    print(f"wrote {SDL_PATH}")


if __name__ == "__main__":
    main()
