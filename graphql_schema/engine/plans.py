"""Query plans: what graphql-core's executor works out on every request, worked out once.

Per request, the stock executor builds an executor and an incremental executor, collects
the selection sets into field groups, looks up every field, walks the completion steps of
each type and builds a result wrapper, for a document that is the same every time. Served,
that was more CPU than the database read of the editor's query (bench/README.md). A
``QueryPlan`` holds the collected fields and their completion steps, made once per
document; a request then only resolves fields and completes values.

A plan answers only an execution that goes through without an error. Anything else (a
resolver raising, a null where the type forbids one, a value its scalar refuses, a failed
awaitable) abandons the plan, and the operation runs through graphql-core from the start,
which produces the errors, paths and partial data exactly as before. That is safe because
plans are made for queries only, which change nothing; a rerun finds the accounts already
read in the request's loader.

Plans cover queries without directives (``@include``, ``@skip``, ``@defer``...), interfaces
or introspection beyond ``__typename``; the rest runs through graphql-core as before. A union
of Strawberry types is completed through the selection worked out for each member, the
member picked as Strawberry's own type resolver picks it (the value's type definition).

**Mutations** get a ``MutationPlan`` (one root field) on the same steps, but a mutation must
never run twice, so it never abandons once its resolver has run. Before the resolver (the
variables or the arguments refused), it leaves the operation to graphql-core, which reports
the errors. After, whatever the plan cannot complete itself (the resolver raised, a value it
cannot complete) is handed to graphql-core as a ``Replay``: graphql-core executes the
operation with the root field's outcome replayed in place of its resolver (a graphql-core
middleware), so it produces the errors, paths and partial data, and the resolver ran once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeAlias

from graphql import (
    DirectiveNode,
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    default_field_resolver,
    is_leaf_type,
    is_object_type,
    is_union_type,
    visit,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.language import BREAK, FieldNode, Visitor
from graphql.pyutils import Path, is_iterable
from graphql.type import GraphQLResolveInfoHelpers, TypeNameMetaFieldDef
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.cast import get_strawberry_type_cast

from graphql_schema.engine.documents import DEFAULT_MAX_BYTES, PerDocument
from graphql_schema.engine.execution import PlainLeaf, coerced_leaf, plain_attribute

logger = logging.getLogger("creditgate")
NO_VARIABLES = VariableValues({}, {})
NO_ARGUMENTS: dict[str, Any] = {}


class Resolvers:
    """A plan's resolver for each field: here the field's own (Strawberry's wrapper), what
    graphql-core calls; graphql_schema/engine/resolvers.py makes direct ones."""

    def of(self, field: GraphQLField) -> Callable[..., Any] | None:
        return field.resolve


STOCK_RESOLVERS = Resolvers()


class Abandon(Exception):
    """This execution leaves its plan: graphql-core runs the operation instead."""


class Unplannable(Exception):
    """The document uses something plans do not cover."""


@dataclass(frozen=True, slots=True)
class NonNull:
    inner: Completion


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Completion


@dataclass(frozen=True, slots=True)
class Leaf:
    type: GraphQLLeafType


@dataclass(frozen=True, slots=True)
class Selection:
    """An object type's fields, as the document selects them, in response order."""

    type: GraphQLObjectType
    fields: tuple[FieldStep, ...]


@dataclass(frozen=True, slots=True)
class UnionOf:
    """A union of Strawberry types: each member's selection, by its type definition."""

    type: GraphQLUnionType
    members: dict[StrawberryObjectDefinition, Selection]


Completion: TypeAlias = NonNull | ListOf | Leaf | Selection | UnionOf


@dataclass(frozen=True, slots=True)
class FieldStep:
    key: str  # the response key: the alias, else the field's name
    name: str
    definition: GraphQLField
    parent: GraphQLObjectType
    nodes: list[FieldNode]
    read: Callable[[Any], Any] | None  # a plain attribute, read without a resolver
    has_arguments: bool
    completion: Completion
    leaf: PlainLeaf | None  # read and completion in one: a plain scalar or enum attribute


@dataclass(frozen=True, slots=True)
class QueryPlan:
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    fields: tuple[FieldStep, ...]

    async def execute(
        self,
        schema: GraphQLSchema,
        root_value: Any,
        context: Any,
        variables: dict[str, Any] | None,
        operation_extensions: dict[str, Any] | None,
        resolvers: Resolvers = STOCK_RESOLVERS,
    ) -> dict[str, Any] | None:
        """The operation's data, or None when the execution must go through graphql-core."""
        coerced = NO_VARIABLES
        if self.operation.variable_definitions:
            found = get_variable_values(
                schema, self.operation.variable_definitions, variables or {}
            )
            if not isinstance(found, VariableValues):
                return None  # graphql-core reports the variables' errors
            coerced = found
        run = PlanRun(self, schema, root_value, context, coerced, operation_extensions, resolvers)
        try:
            data = run.select(self.fields, root_value, None)
            if optimized_is_awaitable(data):
                data = await data
        except Abandon:
            return None
        except Exception:
            # Resolvers' exceptions arrive as Abandon: this is the plan's own fault. The
            # client still gets graphql-core's answer; the log gets the traceback.
            logger.exception("query plan failed; graphql-core answers instead")
            return None
        return data


def _untracked(_work: Any) -> None:
    raise Abandon  # background work a plan cannot wait for: graphql-core can


async def _gather(work: Iterable[Any]) -> list[Any]:
    return await _settle_all(list(work))


HELPERS = GraphQLResolveInfoHelpers(gather=_gather, track=_untracked)


class PlanRun:
    """One execution of a plan. It carries the attributes Strawberry's executor reads to
    build a resolver's info, so resolvers see the very info they would see there."""

    __slots__ = (
        "context_value",
        "fragment_definitions",
        "operation",
        "operation_extensions",
        "resolvers",
        "root_value",
        "schema",
        "variable_values",
    )

    is_awaitable = staticmethod(optimized_is_awaitable)
    abort_signal = None
    async_helpers = HELPERS
    build_resolve_info = StrawberryGraphQLCoreExecutionContext.build_resolve_info

    def __init__(
        self,
        plan: QueryPlan | MutationPlan,
        schema: GraphQLSchema,
        root_value: Any,
        context: Any,
        variables: VariableValues,
        operation_extensions: dict[str, Any] | None,
        resolvers: Resolvers = STOCK_RESOLVERS,
    ) -> None:
        self.resolvers = resolvers
        self.fragment_definitions = plan.fragments
        self.operation = plan.operation
        self.schema = schema
        self.root_value = root_value
        self.context_value = context
        self.variable_values = variables
        self.operation_extensions = operation_extensions

    def select(self, fields: tuple[FieldStep, ...], source: Any, path: Path | None) -> Any:
        data: dict[str, Any] = {}
        pending: list[tuple[str, Any]] = []
        try:
            for step in fields:
                value = self.field(step, source, path)
                if optimized_is_awaitable(value):
                    pending.append((step.key, value))
                data[step.key] = value
        except BaseException:
            _close(value for _, value in pending)
            raise
        if not pending:
            return data
        return self._fill(data, pending)

    async def _fill(self, data: dict[str, Any], pending: list[tuple[str, Any]]) -> Any:
        if len(pending) == 1:  # the common case: one resolver to wait for
            key, value = pending[0]
            data[key] = await value
            return data
        values = await _settle_all([value for _, value in pending])
        for (key, _), value in zip(pending, values, strict=True):
            data[key] = value
        return data

    def field(self, step: FieldStep, source: Any, path: Path | None) -> Any:
        if step.leaf is not None:  # a plain scalar or enum attribute: no path, no info
            answer = step.leaf.answer(source)
            if answer is Undefined:
                raise Abandon
            return answer
        path = Path(path, step.key, step.parent.name)
        try:
            if step.read is not None:
                result = step.read(source)
            else:
                # Borrowed from Strawberry's executor: PlanRun has every attribute it reads.
                info = self.build_resolve_info(  # type: ignore[misc]
                    step.definition, step.nodes, step.parent, path
                )
                arguments = (
                    get_argument_values(step.definition, step.nodes[0], self.variable_values)
                    if step.has_arguments
                    else NO_ARGUMENTS
                )
                result = (self.resolvers.of(step.definition) or default_field_resolver)(
                    source, info, **arguments
                )
        except Exception:
            raise Abandon from None
        if optimized_is_awaitable(result):
            return self._complete_later(step.completion, result, path)
        return self.complete(step.completion, result, path)

    async def _complete_later(self, completion: Completion, result: Any, path: Path) -> Any:
        try:
            value = await result
        except Exception:
            raise Abandon from None
        completed = self.complete(completion, value, path)
        if optimized_is_awaitable(completed):
            completed = await completed
        return completed

    def complete(self, completion: Completion, value: Any, path: Path) -> Any:
        if isinstance(value, Exception):
            raise Abandon
        if type(completion) is NonNull:
            if value is None:
                raise Abandon
            completion = completion.inner
        elif value is None:
            return None
        if type(completion) is Leaf:
            coerced = coerced_leaf(completion.type, value)
            if coerced is Undefined:
                raise Abandon
            return coerced
        if type(completion) is Selection:
            return self.select(completion.fields, value, path)
        if type(completion) is UnionOf:
            return self._complete_member(completion, value, path)
        return self._complete_list(completion.item, value, path)  # type: ignore[union-attr]

    def _complete_member(self, union: UnionOf, value: Any, path: Path) -> Any:
        """The member Strawberry's union type resolver picks: the one whose definition is
        the value's (no generics, no ``strawberry.cast``); anything else, graphql-core's."""
        if isinstance(value, dict) or get_strawberry_type_cast(value) is not None:
            raise Abandon
        selection = union.members.get(getattr(value, "__strawberry_definition__", None))  # type: ignore[arg-type]
        if selection is None:
            raise Abandon
        is_type_of = selection.type.is_type_of
        if is_type_of is not None and not is_type_of(value, None):  # type: ignore[arg-type]
            raise Abandon  # (Strawberry's is_type_of reads no info)
        return self.select(selection.fields, value, path)

    def _complete_list(self, item: Completion, value: Any, path: Path) -> Any:
        if not is_iterable(value):
            raise Abandon  # also an async iterable (a stream): graphql-core's
        items: list[Any] = []
        pending = False
        try:
            for index, element in enumerate(value):
                item_path = Path(path, index, None)
                if optimized_is_awaitable(element):
                    completed = self._complete_later(item, element, item_path)
                else:
                    completed = self.complete(item, element, item_path)
                pending = pending or optimized_is_awaitable(completed)
                items.append(completed)
        except BaseException:
            _close(items)
            raise
        if not pending:
            return items
        return _settle_all(items)


async def _settle_all(values: list[Any]) -> list[Any]:
    """Await every awaitable among the values together, as graphql-core does siblings (so
    their loaders batch); the first failure abandons the plan once all have settled."""
    awaited = [value for value in values if optimized_is_awaitable(value)]
    if len(awaited) == 1:
        results = [await awaited[0]]
    else:
        results = await asyncio.gather(*awaited, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            if isinstance(result, Exception):
                raise Abandon
            raise result
    settled = iter(results)
    return [next(settled) if optimized_is_awaitable(value) else value for value in values]


def _close(values: Iterable[Any]) -> None:
    """Close coroutines made but never awaited (an abandoned plan), so none warns."""
    for value in values:
        close = getattr(value, "close", None)
        if callable(close) and optimized_is_awaitable(value):
            close()


# -- making plans ---------------------------------------------------------------------------


class _FindsDirectives(Visitor):
    found = False

    def enter_directive(self, _node: DirectiveNode, *_args: Any) -> Any:
        self.found = True
        return BREAK


def plan_query(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> QueryPlan | None:
    """The plan of a validated query, or None when it must run through graphql-core."""
    if operation.operation is not OperationType.QUERY or schema.query_type is None:
        return None
    planned = _root_steps(schema, document, operation, schema.query_type)
    if planned is None:
        return None
    definitions, fields = planned
    return QueryPlan(operation, definitions, fields)


def _root_steps(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    root: GraphQLObjectType,
) -> tuple[dict[str, FragmentDefinitionNode], tuple[FieldStep, ...]] | None:
    """The document's fragments and the operation's steps from ``root``, or None when the
    document uses what plans do not cover (directives, variables in fragments, ...)."""
    finder = _FindsDirectives()
    visit(document, finder)
    if finder.found:
        return None
    definitions = {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    if any(node.variable_definitions for node in definitions.values()):
        return None
    fragments = {name: FragmentDetails(node, None) for name, node in definitions.items()}
    try:
        collected = collect_fields(schema, fragments, NO_VARIABLES, root, operation)
        return definitions, _steps(schema, fragments, operation, root, collected)
    except (Unplannable, GraphQLError):
        return None


def _steps(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDetails],
    operation: OperationDefinitionNode,
    parent: GraphQLObjectType,
    collected: Any,
) -> tuple[FieldStep, ...]:
    if collected.new_defer_usages or collected.forbidden_directive_instances:
        raise Unplannable
    steps = []
    for key, details in collected.grouped_field_set.items():
        node = details[0].node
        name = node.name.value
        if name == "__typename":
            definition = TypeNameMetaFieldDef
        elif name.startswith("__") or name not in parent.fields:
            raise Unplannable  # introspection: graphql-core's own resolvers
        else:
            definition = parent.fields[name]
        attribute = None if name == "__typename" else plain_attribute(definition)
        read = attrgetter(attribute) if attribute else None
        completion = _completion(schema, fragments, operation, definition.type, details)
        leaf = None
        if read is not None and isinstance(completion, Leaf):
            leaf = PlainLeaf(read, completion.type, nullable=True)
        elif (
            read is not None
            and isinstance(completion, NonNull)
            and isinstance(completion.inner, Leaf)
        ):
            leaf = PlainLeaf(read, completion.inner.type, nullable=False)
        steps.append(
            FieldStep(
                key=key,
                name=name,
                definition=definition,
                parent=parent,
                nodes=[detail.node for detail in details],
                read=read,
                has_arguments=bool(definition.args or node.arguments),
                completion=completion,
                leaf=leaf,
            )
        )
    return tuple(steps)


def _completion(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDetails],
    operation: OperationDefinitionNode,
    type_: GraphQLOutputType,
    details: FieldDetailsList,
) -> Completion:
    if isinstance(type_, GraphQLNonNull):
        return NonNull(_completion(schema, fragments, operation, type_.of_type, details))
    if isinstance(type_, GraphQLList):
        return ListOf(_completion(schema, fragments, operation, type_.of_type, details))
    if is_leaf_type(type_):
        return Leaf(type_)
    if is_union_type(type_):
        return _union(schema, fragments, operation, type_, details)
    if not is_object_type(type_) or type_.is_type_of is not None:
        raise Unplannable  # interfaces and unions resolve their type per value
    collected = collect_subfields(schema, fragments, NO_VARIABLES, operation, type_, details)
    return Selection(type_, _steps(schema, fragments, operation, type_, collected))


def _union(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDetails],
    operation: OperationDefinitionNode,
    type_: GraphQLUnionType,
    details: FieldDetailsList,
) -> UnionOf:
    members: dict[StrawberryObjectDefinition, Selection] = {}
    for member in schema.get_possible_types(type_):
        definition = (member.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if (
            not isinstance(definition, StrawberryObjectDefinition)
            or definition.is_graphql_generic
            or definition.concrete_of is not None
            or definition in members
        ):
            raise Unplannable  # generics and cast types resolve through Strawberry
        collected = collect_subfields(schema, fragments, NO_VARIABLES, operation, member, details)
        members[definition] = Selection(
            member, _steps(schema, fragments, operation, member, collected)
        )
    return UnionOf(type_, members)


@dataclass(frozen=True, slots=True)
class Replay:
    """A mutation's root field already resolved: graphql-core completes its outcome (the
    value, or the exception it raised) in place of calling the resolver again. Passed to
    graphql-core as a middleware, which sees every field; only the root field is replayed."""

    key: str
    outcome: Any
    raised: bool

    def resolve(
        self, next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo, **args: Any
    ) -> Any:
        path = info.path
        if path.prev is None and path.key == self.key:
            if self.raised:
                raise self.outcome
            return self.outcome
        return next_(root, info, **args)


@dataclass(frozen=True, slots=True)
class MutationPlan:
    """One root mutation field: its arguments coerced per request, its resolver called once,
    its result completed through the plan's steps."""

    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    field: FieldStep

    async def execute(
        self,
        schema: GraphQLSchema,
        root_value: Any,
        context: Any,
        variables: dict[str, Any] | None,
        operation_extensions: dict[str, Any] | None,
        resolvers: Resolvers = STOCK_RESOLVERS,
    ) -> dict[str, Any] | Replay | None:
        """The data; or a ``Replay`` of the resolved root field for graphql-core to
        complete; or None, before anything ran, for graphql-core to execute."""
        coerced = NO_VARIABLES
        if self.operation.variable_definitions:
            found = get_variable_values(
                schema, self.operation.variable_definitions, variables or {}
            )
            if not isinstance(found, VariableValues):
                return None  # graphql-core reports the variables' errors
            coerced = found
        step = self.field
        run = PlanRun(self, schema, root_value, context, coerced, operation_extensions, resolvers)
        path = Path(None, step.key, step.parent.name)
        try:
            info = run.build_resolve_info(  # type: ignore[misc]
                step.definition, step.nodes, step.parent, path
            )
            arguments = (
                get_argument_values(step.definition, step.nodes[0], coerced)
                if step.has_arguments
                else NO_ARGUMENTS
            )
        except Exception:
            return None  # nothing ran: graphql-core reports the arguments' errors
        # From here on the mutation has run: never None, never a second call.
        try:
            result = resolvers.of(step.definition)(root_value, info, **arguments)  # type: ignore[misc]
            if optimized_is_awaitable(result):
                result = await result
        except Exception as error:
            return Replay(step.key, error, raised=True)
        try:
            completed = run.complete(step.completion, result, path)
            if optimized_is_awaitable(completed):
                completed = await completed
        except Abandon:
            return Replay(step.key, result, raised=False)
        except Exception:
            logger.exception("mutation plan failed to complete; graphql-core completes it")
            return Replay(step.key, result, raised=False)
        return {step.key: completed}


def plan_mutation(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> MutationPlan | None:
    """The plan of a validated mutation of one root field with a resolver, or None."""
    mutation_type = schema.mutation_type
    if operation.operation is not OperationType.MUTATION or mutation_type is None:
        return None
    planned = _root_steps(schema, document, operation, mutation_type)
    if planned is None:
        return None
    definitions, fields = planned
    if len(fields) != 1 or fields[0].definition.resolve is None or fields[0].name.startswith("__"):
        return None
    return MutationPlan(operation, definitions, fields[0])


class QueryPlans:
    """Plans by document text and operation name (queries and mutations), bounded like the
    document caches."""

    def __init__(
        self,
        maxsize: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        resolvers: Resolvers = STOCK_RESOLVERS,
    ) -> None:
        self.resolvers = resolvers  # what the plans call for each field
        self._plans: PerDocument[tuple[str, str | None], QueryPlan | MutationPlan | None]
        self._plans = PerDocument(maxsize, max_bytes)

    def get(
        self,
        schema: GraphQLSchema,
        query: str,
        operation_name: str | None,
        document: DocumentNode,
        operation: OperationDefinitionNode,
    ) -> QueryPlan | MutationPlan | None:
        plan = plan_mutation if operation.operation is OperationType.MUTATION else plan_query
        return self._plans.get(
            (query, operation_name), document, lambda: plan(schema, document, operation)
        )
