"""The schema, with the per-operation policy every deployment runs."""

from __future__ import annotations

import json
from pathlib import Path

from graphql import is_abstract_type
from strawberry.schema.config import StrawberryConfig

from graphql_schema.engine.documents import Documents
from graphql_schema.engine.masking import MASKED_MESSAGE
from graphql_schema.engine.operations import GatewaySchema, OperationPolicy
from graphql_schema.mutations import Mutation, SandboxMutation
from graphql_schema.queries import Query
from graphql_schema.results import Error
from graphql_schema.subscriptions import LiveUpdates

SDL_PATH = Path(__file__).with_name("schema.graphql")
# Apollo Client's cache needs the members of every union and interface (``possibleTypes``)
# to match fragments on them; production turns introspection off, so it ships as a file.
POSSIBLE_TYPES_PATH = Path(__file__).with_name("possible-types.json")
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
    ``fast_paths``: plain leaves and query plans (graphql_schema/engine/fences.py decides)."""
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


def possible_types() -> dict[str, list[str]]:
    """``{union or interface: [object types]}``, sorted, as Apollo's ``possibleTypes`` takes it."""
    schema = create_schema()._schema
    return {
        name: sorted(member.name for member in schema.get_possible_types(named))
        for name, named in sorted(schema.type_map.items())
        if is_abstract_type(named) and not name.startswith("__")
    }


def export_possible_types() -> str:
    return json.dumps(possible_types(), indent=2) + "\n"


def main() -> None:
    SDL_PATH.write_text(export_sdl())
    print(f"wrote {SDL_PATH}")
    POSSIBLE_TYPES_PATH.write_text(export_possible_types())
    print(f"wrote {POSSIBLE_TYPES_PATH}")


if __name__ == "__main__":
    main()
