"""graphql-transport-ws as the gateway serves it: every operation under the HTTP rules.

Strawberry's handler, and on top of it, in the order a connection meets them:

    frame      bounded before it is parsed: the HTTP body limit once acknowledged, a small
               bound before (connection_init carries only a token); larger closes 4413
    message    not a JSON object: 4400; nested too deep to decode, or holding a lone
               surrogate (as HTTP refuses): the operation is answered BAD_USER_INPUT when
               its id can be read, and the connection stays open
    init       the account's connections are counted in the hub: over the cap, 4429
    subscribe  trusted documents (PERSISTED_QUERY_NOT_IN_LIST), variables' depth, unknown
               fragments, then subscriptions counted per account (TOO_MANY_SUBSCRIPTIONS);
               each refusal is an ``error`` message for that operation id
    run        queries and mutations through ``GatewaySchema.execute``, the HTTP path;
               subscriptions through Strawberry's, whose extensions share the same policy
    expiry     when the token runs out (the renewal alarm watches the clock): 4403
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    get_operation_ast,
    validate,
)
from graphql.validation import KnownFragmentNamesRule
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.types.graphql import OperationType

from app.events.hub import OverCapacity
from app.security.http_guards import has_lone_surrogate
from graphql_schema.context import Context
from graphql_schema.engine.trusted_documents import with_document_id
from graphql_schema.errors import ApiError, bad_input

CLOSE_TOKEN_EXPIRED = 4403
CLOSE_TOO_LARGE = 4413
CLOSE_TOO_MANY_CONNECTIONS = 4429
# connection_init carries a token: a few hundred bytes. Bounded before anyone is known.
INIT_MAX_BYTES = 8 * 1024
# Deeper variables than any input type here needs; checked without recursion.
MAX_VARIABLE_DEPTH = 32


@dataclass(frozen=True, slots=True)
class WebSocketLimits:
    max_frame_bytes: int = 128 * 1024
    init_max_bytes: int = INIT_MAX_BYTES


class TextFrames(ASGIWebSocketAdapter):
    """Strawberry's adapter, also handing out frames as text, undecoded, to be bounded first."""

    async def iter_text(self) -> AsyncGenerator[str, None]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                yield await self.ws.receive_text()
        except KeyError as exc:  # a binary frame
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect:
            return


class TooDeep(Exception):
    """A message nested deeper than the JSON decoder recurses; ``outline`` has the rest."""

    def __init__(self, outline: object) -> None:
        self.outline = outline


def too_many_subscriptions(error: OverCapacity) -> ApiError:
    return ApiError(str(error), "TOO_MANY_SUBSCRIPTIONS", limit=error.limit)


class GatewayTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """The gateway's graphql-transport-ws handler (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: WebSocketLimits = getattr(self.view, "websocket_limits", WebSocketLimits())
        self._expiry: asyncio.Task[None] | None = None
        self._kinds: dict[str, OperationType] = {}

    async def handle(self) -> None:
        # Strawberry's loop with the frame bound before decoding, and our decoding.
        self.on_request_accepted()
        frames = cast(TextFrames, self.websocket)
        try:
            try:
                async for text in frames.iter_text():
                    if not await self._within_bounds(text):
                        return
                    try:
                        message = decode_message(text)
                    except TooDeep as deep:
                        error = bad_input("The message nests too deeply.", "variables")
                        await self._refuse_message(deep.outline, error)
                        continue
                    if has_lone_surrogate(text, message):
                        error = bad_input("Strings must be valid Unicode: no lone surrogates.")
                        await self._refuse_message(message, error)
                        continue
                    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                        await self.handle_invalid_message("Failed to parse message")
                        return
                    await self.handle_message(cast(Message, message))
            except NonTextMessageReceived:
                await self.handle_invalid_message("WebSocket message type must be text")
            except NonJsonMessageReceived:
                await self.handle_invalid_message("WebSocket message must be valid JSON")
        except WebSocketDisconnected:
            pass
        finally:
            await self.shutdown()

    async def _within_bounds(self, text: str) -> bool:
        limit = (
            self.limits.max_frame_bytes
            if self.connection_acknowledged
            else min(self.limits.init_max_bytes, self.limits.max_frame_bytes)
        )
        # Characters first: no encoding for what is clearly too long or clearly short.
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            await self.websocket.close(CLOSE_TOO_LARGE, f"Messages are limited to {limit} bytes")
            return False
        return True

    async def _refuse_message(self, message: object, error: ApiError) -> None:
        """Answer a subscribe that cannot run with ``error``; anything else is invalid."""
        if (
            self.connection_acknowledged
            and isinstance(message, dict)
            and message.get("type") == "subscribe"
            and isinstance(message.get("id"), str)
            and message["id"] not in self.operations
        ):
            await self._refuse(message["id"], error)
            return
        await self.handle_invalid_message("Failed to parse message")

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except OverCapacity as error:
            await self.websocket.close(CLOSE_TOO_MANY_CONNECTIONS, str(error))
            return
        session = self.context.session
        if self.connection_acknowledged and session is not None:
            self._expiry = asyncio.create_task(self._close_on_expiry(session.expired))

    async def _close_on_expiry(self, expired: asyncio.Event) -> None:
        await expired.wait()
        with contextlib.suppress(Exception):
            await self.websocket.close(CLOSE_TOKEN_EXPIRED, "The token has expired")

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload = message.get("payload")
        operation_id = message.get("id")
        if not self.connection_acknowledged or operation_id in self.operations:
            await super().handle_subscribe(message)  # closes the connection, as it should
            return
        if not isinstance(payload, dict) or not isinstance(operation_id, str):
            # Strawberry would fail on these with an exception, not a close code.
            await self.handle_invalid_message("Failed to parse message")
            return
        try:
            request = self._admit(dict(payload))
        except ApiError as error:
            await self._refuse(operation_id, error)
            return
        kind, errors = self._kind_of(request)
        if errors:
            await self._refuse(operation_id, *errors)
            return
        release: Callable[[], None] | None = None
        if kind is OperationType.SUBSCRIPTION:
            principal = self.context.known_principal
            if principal is not None and principal.account_id is not None:
                try:
                    release = self.context.require_feeds().hold_subscription(principal.account_id)
                except OverCapacity as error:
                    await self._refuse(operation_id, too_many_subscriptions(error))
                    return
        if kind is not None:
            self._kinds[operation_id] = kind
        admitted = {**payload, "query": request.query}
        await super().handle_subscribe(cast(SubscribeMessage, {**message, "payload": admitted}))
        operation = self.operations.get(operation_id)
        if operation is None:
            self._kinds.pop(operation_id, None)
        if release is not None:
            if operation is None or operation.task is None:
                release()
            else:
                # A done callback runs even for a task cancelled before it started.
                operation.task.add_done_callback(lambda _task: release())

    def _admit(self, payload: dict[str, Any]) -> GraphQLRequestData:
        """Trusted documents and the variables' depth, as for a request over HTTP."""
        payload = with_document_id(payload)
        variables = payload.get("variables")
        if deeper_than(variables, MAX_VARIABLE_DEPTH):
            raise bad_input("Variables nest too deeply.", "variables")
        extensions = payload.get("extensions")
        query = payload.get("query")
        request = GraphQLRequestData(
            query=query if isinstance(query, str) else None,
            variables=variables if isinstance(variables, dict) else None,
            operation_name=payload.get("operationName"),
            extensions=extensions if isinstance(extensions, dict) else None,
        )
        trusted = getattr(self.view, "trusted_documents", None)
        return trusted.admit(request, self.context) if trusted is not None else request

    def _kind_of(
        self, request: GraphQLRequestData
    ) -> tuple[OperationType | None, list[GraphQLError]]:
        """The operation's type, or the client errors answered instead of running it.

        Unknown fragments are refused here as they are by validation: the depth limiter
        would otherwise fail on them (an unexpected error that only ended the operation).
        Syntax errors and a missing operation are left to Strawberry (it closes with 4400).
        """
        document = self._parsed(request.query)
        if document is None:
            return None, []
        if errors := validate(self.schema._schema, document, [KnownFragmentNamesRule]):  # type: ignore[attr-defined]
            return None, errors
        definition = get_operation_ast(document, request.operation_name)
        if not isinstance(definition, OperationDefinitionNode):
            return None, []
        return OperationType(definition.operation.value), []

    def _parsed(self, query: str | None) -> DocumentNode | None:
        policy = getattr(self.schema, "policy", None)
        if query is None or policy is None:
            return None
        try:
            document: DocumentNode = policy.documents.parse(query, policy.parse_options)
        except GraphQLError:
            return None
        return document

    async def _refuse(self, operation_id: str, *errors: GraphQLError) -> None:
        await self.send_message(
            cast(
                Message,
                {"id": operation_id, "type": "error", "payload": [e.formatted for e in errors]},
            )
        )

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Queries and mutations run the HTTP path; subscriptions Strawberry's."""
        kind = self._kinds.pop(operation.id, None)
        if kind is None or kind is OperationType.SUBSCRIPTION:
            await super().run_operation(operation)
            return
        try:
            result = await self.schema.execute(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError) as exc:
            await operation.send_initial_errors([GraphQLError(str(exc))])
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            raise
        if result.data is None and result.errors:
            # Nothing ran (validation, a guard, a limit): an ``error`` message, as the
            # protocol has for errors before execution.
            await operation.send_initial_errors(result.errors)
            return
        await operation.send_next(result)
        await operation.send_operation_message({"id": operation.id, "type": "complete"})

    async def shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        try:
            await super().shutdown()
        finally:
            self.context.close_session()


def decode_message(text: str) -> object:
    """The message, or TooDeep with the message's outline (deep values as null)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NonJsonMessageReceived from exc
    except RecursionError:
        try:
            outline = json.loads(_flattened(text, MAX_VARIABLE_DEPTH))
        except (json.JSONDecodeError, RecursionError):
            raise NonJsonMessageReceived from None
        raise TooDeep(outline) from None


def _flattened(text: str, max_depth: int) -> str:
    """``text`` with every array or object nested deeper than ``max_depth`` replaced by null.

    Used only for a message the decoder refused as too deep, to learn its id and type; it
    walks the characters once, keeping track of strings, without recursion.
    """
    out: list[str] = []
    depth = 0
    skipping_from = 0  # the depth at which skipping started; 0: not skipping
    in_string = escaped = False
    for char in text:
        if in_string:
            if not skipping_from:
                out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char in "[{":
            depth += 1
            if not skipping_from and depth > max_depth:
                skipping_from = depth
                out.append("null")
                continue
        elif char in "]}":
            depth -= 1
            if skipping_from:
                if depth < skipping_from:
                    skipping_from = 0
                continue
        elif char == '"':
            in_string = True
        if not skipping_from:
            out.append(char)
    return "".join(out)


def deeper_than(value: object, limit: int) -> bool:
    """Whether JSON ``value`` nests arrays and objects more than ``limit`` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
