"""A plan's resolver call without Strawberry's general wrapper, for the fields that allow it.

Per call, Strawberry's wrapper around a resolver builds its ``Info``, converts the arguments
by walking their annotations (``convert_arguments``: ~14 us for runGenerator's input, about
a third of what a mutation's layer costs above the services), folds the field extensions
around the call and awaits through ``await_maybe``. For a field with a resolver and none of
what that wrapper exists for (no field extensions, so no permission classes; no directives;
no exception handlers in the schema; arguments of scalars, enums, lists and plain input
types), ``DirectResolver`` does the same call with a converter worked out once per field.
Anything else keeps Strawberry's wrapper. Fenced with the plans (fences.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any

from graphql import GraphQLField
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import _is_leaf_type
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

from graphql_schema.engine.plans import Resolvers

Convert = Callable[[Any], Any]


class Unconvertible(Exception):
    """An argument type the converter does not cover: Strawberry's wrapper converts it."""


def _same(value: Any) -> Any:
    return value


def converter(type_: Any, registry: Any, config: StrawberryConfig) -> Convert:
    """What ``strawberry.types.arguments.convert_argument`` does to a coerced value of
    ``type_`` (never None or UNSET: those pass as they are), as one function made once;
    ``Unconvertible`` for what it does not cover."""
    if isinstance(type_, StrawberryMaybe | LazyType):
        raise Unconvertible
    if isinstance(type_, StrawberryOptional):
        return converter(type_.of_type, registry, config)  # None and UNSET never reach it
    if isinstance(type_, StrawberryList):
        item = type_.of_type
        if isinstance(item, StrawberryOptional):
            item = item.of_type
        if _is_leaf_type(item, registry) and not _is_global_id(item):
            return list  # Strawberry copies a list of leaves: never the shared default
        each = converter(type_.of_type, registry, config)
        return lambda value: [None if x is None else each(x) for x in value]
    if _is_global_id(type_):
        raise Unconvertible  # decoded, with its own errors
    if _is_leaf_type(type_, registry) or has_enum_definition(type_):
        return _same
    if not has_object_definition(type_):
        raise Unconvertible
    definition = type_.__strawberry_definition__
    if (
        definition.from_input is not None
        or not definition.is_input
        or definition.is_graphql_generic
    ):
        raise Unconvertible
    defaults = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    }
    fields = tuple(
        (
            config.name_converter.from_field(field),
            field.python_name,
            converter(field.resolve_type(type_definition=definition), registry, config),
        )
        for field in definition.fields
    )

    def build(value: Any) -> Any:
        kwargs = dict(defaults)
        for graphql_name, python_name, convert in fields:
            if graphql_name in value:
                item = value[graphql_name]
                kwargs[python_name] = item if item is None or item is UNSET else convert(item)
        return type_(**kwargs)

    return build


def _is_global_id(type_: Any) -> bool:
    from strawberry.relay.types import GlobalID

    return type_ is GlobalID


@dataclass(frozen=True, slots=True)
class DirectResolver:
    """Calls the field's resolver as Strawberry's wrapper does, with arguments converted."""

    field: StrawberryField
    info_class: type
    arguments: tuple[tuple[str, str, Convert], ...]  # GraphQL name, Python name, converter
    self_parameter: bool
    source_parameters: tuple[str, ...]  # ``root`` or ``parent``: given the source
    info_parameter: str | None

    def __call__(self, source: Any, info: Any, **values: Any) -> Any:
        strawberry_info = self.info_class(_raw_info=info, _field=self.field)
        kwargs: dict[str, Any] = {}
        for graphql_name, python_name, convert in self.arguments:
            if graphql_name in values:
                value = values[graphql_name]
                kwargs[python_name] = value if value is None or value is UNSET else convert(value)
        for name in self.source_parameters:
            kwargs[name] = source
        if self.info_parameter is not None:
            kwargs[self.info_parameter] = strawberry_info
        args = [source] if self.self_parameter else []
        return self.field.get_result(source, info=strawberry_info, args=args, kwargs=kwargs)


def direct_resolver(
    converter_of: GraphQLCoreConverter, field: GraphQLField
) -> DirectResolver | None:
    """The direct call for ``field``, or None where Strawberry's wrapper must run."""
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        not isinstance(definition, StrawberryField)
        or definition.base_resolver is None
        or definition.extensions
        or definition.permission_classes
        or definition.directives
        or definition.is_subscription
        or converter_of._get_field_exception_handlers(definition)
    ):
        return None
    resolver = definition.base_resolver
    config = converter_of.config
    try:
        arguments = tuple(
            (
                config.name_converter.from_argument(argument),
                argument.python_name,
                converter(argument.type, converter_of.scalar_registry, config),
            )
            for argument in definition.arguments
        )
    except Unconvertible:
        return None
    sources = tuple(
        parameter.name
        for parameter in (resolver.parent_parameter, resolver.root_parameter)
        if parameter is not None
    )
    info = resolver.info_parameter
    return DirectResolver(
        definition,
        config.info_class,
        arguments,
        self_parameter=resolver.self_parameter is not None,
        source_parameters=sources,
        info_parameter=info.name if info is not None else None,
    )


class DirectResolvers(Resolvers):
    """Each field's resolver for a plan: direct where allowed, else the field's own
    (Strawberry's wrapper); worked out on first use, once per field of one schema."""

    def __init__(self, converter_of: GraphQLCoreConverter) -> None:
        self._converter = converter_of
        # By identity (graphql-core's fields are not hashable); the field is kept with its
        # resolver, so an id is never reused while it is in here.
        self._found: dict[int, tuple[GraphQLField, Callable[..., Any] | None]] = {}

    def of(self, field: GraphQLField) -> Callable[..., Any] | None:
        found = self._found.get(id(field))
        if found is None or found[0] is not field:
            found = (field, direct_resolver(self._converter, field) or field.resolve)
            self._found[id(field)] = found
        return found[1]
