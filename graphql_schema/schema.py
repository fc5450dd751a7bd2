"""The schema, with the per-operation policy every deployment runs."""

from __future__ import annotations

from pathlib import Path

from strawberry.schema.config import StrawberryConfig

from graphql_schema.documents import Documents
from graphql_schema.masking import MASKED_MESSAGE
from graphql_schema.mutations import Mutation, SandboxMutation
from graphql_schema.operations import GatewaySchema, OperationPolicy
from graphql_schema.queries import Query
from graphql_schema.results import Error
from graphql_schema.subscriptions import LiveUpdates

SDL_PATH = Path(__file__).with_name("schema.graphql")
__all__ = ["MASKED_MESSAGE", "create_schema"]


def create_schema(
    *,
    policy: OperationPolicy | None = None,
    field_suggestions: bool = True,
    sandbox_payments: bool = False,
    fast_paths: bool = True,
) -> GatewaySchema:
    """``policy``: limits, guards and metrics (from the app factory); by default only the
    document cache, as for exporting the SDL or building a trusted-documents manifest.
    ``sandbox_payments`` adds ``sandboxSettlePayment``; the exported SDL is without it.
    ``fast_paths``: plain leaves and query plans (graphql_schema/fences.py decides)."""
    return GatewaySchema(
        query=Query,
        mutation=SandboxMutation if sandbox_payments else Mutation,
        subscription=LiveUpdates,
        types=[Error],
        policy=policy or OperationPolicy(Documents(maxsize=256)),
        fast_paths=fast_paths,
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
