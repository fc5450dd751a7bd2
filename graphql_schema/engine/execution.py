"""graphql-core's executor, made cheaper per request without changing a single answer.

Two costs of the stock executor showed in the benchmark's profiles (bench/README.md):

- **Plain leaf fields.** For every field, graphql-core builds a resolve-info object (17
  values), calls Strawberry's resolver wrapper, then completes the value through the
  non-null, leaf and coercion steps. Most fields the clients read (balances, dates, plan)
  are attributes of an already loaded object: for those, reading the attribute and
  coercing it is the whole answer. ``PlainLeaf`` is that shortcut; anything unusual (a
  null where the type forbids it, a value the scalar refuses, an exception) falls back to
  graphql-core's own path, so errors are raised, located and masked exactly as before.
- **A reference cycle.** The executor keeps helpers bound to its own methods, which held
  each operation (context, loader, request, field plans) until the cyclic collector came by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    is_leaf_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField


@dataclass(frozen=True, slots=True)
class PlainLeaf:
    """A field answered by reading one attribute and coercing it to a scalar or enum."""

    read: Callable[[Any], Any]
    type: GraphQLLeafType
    nullable: bool

    def answer(self, source: Any) -> Any:
        """The coerced value, or ``Undefined`` when graphql-core must decide (errors); it
        then reads the attribute again, harmless for the plain values these fields hold."""
        try:
            value = self.read(source)
        except Exception:
            return Undefined
        if value is None:
            return None if self.nullable else Undefined
        return coerced_leaf(self.type, value)


def coerced_leaf(type_: GraphQLLeafType, value: Any) -> Any:
    """A non-null value coerced to a scalar or enum as graphql-core completes a leaf, or
    ``Undefined`` where graphql-core would raise (the value refused, or coerced to null)."""
    try:
        coerced = type_.coerce_output_value(value)
    except Exception:
        return Undefined
    return Undefined if coerced is None else coerced


def plain_attribute(field: GraphQLField) -> str | None:
    """The Python attribute a field is read from, when reading it is the whole resolver.

    Strawberry marks as default (``_is_default``) every field without a resolver, also one
    that carries permission classes or extensions: trusting that mark would answer a field
    whose permission denies. So only a basic field qualifies: no resolver, no permission
    classes, no field extensions, no directives, no arguments, read with ``getattr``.
    """
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        not isinstance(definition, StrawberryField)
        or not definition.is_basic_field
        or definition.base_resolver is not None
        or definition.permission_classes
        or definition.extensions
        or definition.directives
        or definition.default_resolver is not getattr
        or field.args
        or not getattr(field.resolve, "_is_default", False)
    ):
        return None
    return definition.python_name


def plain_leaves(schema: GraphQLSchema) -> dict[tuple[str, str], PlainLeaf]:
    """Every field of the schema's object types that ``PlainLeaf`` may answer: a plain
    attribute (``plain_attribute``) of a scalar or enum type."""
    found: dict[tuple[str, str], PlainLeaf] = {}
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__") or not is_object_type(named):
            continue
        for field_name, field in named.fields.items():
            attribute = plain_attribute(field)
            if attribute is None:
                continue
            nullable = not isinstance(field.type, GraphQLNonNull)
            leaf = field.type if nullable else field.type.of_type
            if is_leaf_type(leaf):
                found[type_name, field_name] = PlainLeaf(attrgetter(attribute), leaf, nullable)
    return found


class GatewayExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor with plain leaves answered directly and no reference cycle.

    Bind it to a schema with ``for_schema``; the bare class answers every field the stock way.
    """

    plain: Mapping[tuple[str, str], PlainLeaf] = {}

    @classmethod
    def for_schema(cls, schema: GraphQLSchema) -> type[GatewayExecutionContext]:
        return type(cls.__name__, (cls,), {"plain": plain_leaves(schema)})

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        leaf = self.plain.get((parent_type.name, field_details_list[0].node.name.value))
        if leaf is not None and self.middleware_manager is None:
            answer = leaf.answer(source)
            if answer is not Undefined:
                return answer
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def build_response(self, data: dict[str, Any] | None) -> Any:
        # The cycle is cut after a complete, error-free execution only: with errors,
        # graphql-core may still settle sibling fields in the background.
        response = super().build_response(data)
        if isinstance(response, GraphQLExecutionResult) and not response.errors:
            self.async_helpers = None  # type: ignore[assignment]
        return response
