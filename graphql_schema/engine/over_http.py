"""GraphQL over HTTP as the clients speak it: media types, status codes, refusals, batches.

The GraphQL-over-HTTP draft defines two response media types, chosen by ``Accept``:

- ``application/json`` (what every client understood before 2025): 200 for every GraphQL
  result, errors included; the behaviour the gateway always had.
- ``application/graphql-response+json`` (Apollo Client and urql ask for it first): a
  *request error* (the document does not parse or validate, variables do not coerce, or
  the gateway refuses the whole request before executing it) has no ``data`` entry and a
  4xx status: 401 for a bad token, 403 for a forbidden one or a document outside the
  trusted list, 429 for a rate limit, 400 for everything else; once execution started, 200.

Refusals that Strawberry raises as ``HTTPException`` (malformed JSON, a missing query, a
mutation over GET) become GraphQL error bodies with ``extensions.code`` instead of plain
text, which clients would report as a network error. Batches (a JSON array, as Apollo's
``BatchHttpLink`` sends) are capped and run one operation after another, each with a
context of its own, exactly as if sent alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.types import HTTPMethod
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graphql_schema.engine.json_posts import request_data as operation_of
from graphql_schema.errors import ApiError

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
CONTENT_TYPES = {JSON: JSON, GRAPHQL_RESPONSE: f"{GRAPHQL_RESPONSE}; charset=utf-8"}
# The answer depends on Accept: a cache in between (a CDN caching persisted GET queries)
# must keep one copy per media type.
VARY = {"vary": "Accept"}

# Request errors refused as a whole, by code (graphql-response+json only); others are 400.
REQUEST_ERROR_STATUS: Mapping[str, int] = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "PERSISTED_QUERY_NOT_IN_LIST": 403,
    "RATE_LIMITED": 429,
}
HTTP_CODES: Mapping[int, str] = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
}


class Refused(HTTPException):
    """An HTTP refusal with a GraphQL error code and headers (``Allow`` on a 405)."""

    def __init__(
        self, status_code: int, reason: str, code: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, reason)
        self.code = code
        self.headers = dict(headers or {})


def media_type_for(accept: str | None) -> str:
    """The response media type ``accept`` prefers; ``application/json`` when it names
    neither, is missing, or only matches through a wildcard (``*/*``, ``application/*``).

    A type named outright beats a wildcard at the same quality; between two named at the
    same quality, graphql-response+json wins (the draft asks servers to prefer it)."""
    if not accept:
        return JSON
    # Per candidate, the quality of the most specific range that matches it (RFC 9110).
    found = {JSON: (0.0, 0), GRAPHQL_RESPONSE: (0.0, 0)}
    for media_range in accept.split(","):
        name, *params = (part.strip() for part in media_range.split(";"))
        quality = _quality(params)
        for candidate, (_, specificity) in found.items():
            matched = _specificity(name.lower(), candidate)
            if matched > specificity:
                found[candidate] = (quality, matched)
    (json_q, _), (response_q, response_match) = found[JSON], found[GRAPHQL_RESPONSE]
    if response_q > json_q or (response_q == json_q > 0 and response_match == 3):
        return GRAPHQL_RESPONSE
    return JSON


def _quality(params: Sequence[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def _specificity(media_range: str, candidate: str) -> int:
    """3 for the type itself, 2 for ``application/*``, 1 for ``*/*``, 0 for no match."""
    if media_range == candidate:
        return 3
    if media_range == "application/*":
        return 2
    return 1 if media_range == "*/*" else 0


def is_request_error(response: GraphQLHTTPResponse) -> bool:
    """No data, and no error of a field: nothing was executed (the draft's request error)."""
    errors = response.get("errors")
    return (
        response.get("data") is None
        and bool(errors)
        and all(isinstance(error, dict) and "path" not in error for error in errors or ())
    )


def refused(result: ExecutionResult) -> bool:
    """The result of a request error: nothing executed (the document, its variables or a
    guard refused it), so, among others, its text is not registered as a persisted query."""
    errors = result.errors
    return result.data is None and bool(errors) and all(e.path is None for e in errors or ())


def _extensions_of(error: object) -> dict[str, Any]:
    found = error.get("extensions") if isinstance(error, dict) else None
    return found if isinstance(found, dict) else {}


def request_error_status(response: GraphQLHTTPResponse) -> int:
    for error in response.get("errors") or ():
        code = _extensions_of(error).get("code")
        if isinstance(code, str) and code in REQUEST_ERROR_STATUS:
            return REQUEST_ERROR_STATUS[code]
    return 400


def shaped(
    response: GraphQLHTTPResponse, media_type: str
) -> tuple[GraphQLHTTPResponse, int, dict[str, str]]:
    """The body, status and headers ``response`` is answered with in ``media_type``."""
    if media_type != GRAPHQL_RESPONSE or not is_request_error(response):
        return response, 200, {}
    status = request_error_status(response)
    body: GraphQLHTTPResponse = {k: v for k, v in response.items() if k != "data"}  # type: ignore[assignment]
    headers = {}
    if status == 429:
        retry_after = _extension(response, "retryAfter")
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
    return body, status, headers


def _extension(response: GraphQLHTTPResponse, key: str) -> object:
    for error in response.get("errors") or ():
        value = _extensions_of(error).get(key)
        if value is not None:
            return value
    return None


def refusal_body(reason: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": reason, "extensions": {"code": code}}]}


def code_of(exc: HTTPException) -> str:
    if isinstance(exc, Refused):
        return exc.code
    return HTTP_CODES.get(exc.status_code, "BAD_REQUEST")


def refused_result(exc: HTTPException) -> ExecutionResult:
    """One operation of a batch refused as it would be alone, as that item's result."""
    return ExecutionResult(data=None, errors=[ApiError(exc.reason, code_of(exc))])


class GraphQLOverHTTP:
    """Mixed into the gateway's ``strawberry.asgi.GraphQL`` view (before it in the bases).

    ``max_batch_size``: operations a JSON array may hold; 0 turns batching off."""

    max_batch_size = 10

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # type: ignore[misc]
            return
        request = Request(scope=scope, receive=receive)
        view: Any = self
        try:
            if request.method not in ("GET", "POST"):
                message = "GraphQL is served over GET and POST."
                raise Refused(405, message, "METHOD_NOT_ALLOWED", {"allow": "GET, POST"})
            response = await view.run(request)
        except HTTPException as exc:
            response = self.refusal(request, exc)
        await response(scope, receive, send)

    def refusal(self, request: Request, exc: HTTPException) -> Response:
        """A GraphQL error body with ``extensions.code``, in the media type asked for."""
        view: Any = self
        media_type = media_type_for(request.headers.get("accept"))
        headers = {**VARY, **(exc.headers if isinstance(exc, Refused) else {})}
        return Response(
            view.encode_json(refusal_body(exc.reason, code_of(exc))),
            status_code=exc.status_code,
            media_type=CONTENT_TYPES[media_type],
            headers=headers,
        )

    def graphql_response(
        self,
        accept: str | None,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
    ) -> Response:
        """The answer to a request whose ``Accept`` is ``accept``: the one place both the
        JSON lane and Strawberry's path choose the media type, the status and the body."""
        view: Any = self
        media_type = media_type_for(accept)
        if isinstance(response_data, list):
            body: Any = [shaped(item, media_type)[0] for item in response_data]
            status, headers = 200, dict[str, str]()
        else:
            body, status, headers = shaped(response_data, media_type)
        return Response(
            view.encode_json(body),
            status_code=status,
            media_type=CONTENT_TYPES[media_type],
            headers={**VARY, **headers},
        )

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Not for a GET that names a persisted query: that is a client, whatever it accepts."""
        params = request.query_params
        if params.get("extensions") is not None or params.get("documentId") is not None:
            return False
        return bool(super().should_render_graphql_ide(request))  # type: ignore[misc]

    async def get_sub_response(self, request: Request) -> Response:
        sub_response: Response = await super().get_sub_response(request)  # type: ignore[misc]
        sub_response.accept = request.headers.get("accept")  # type: ignore[attr-defined]
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = self.graphql_response(getattr(sub_response, "accept", None), response_data)
        response.headers.raw.extend(sub_response.headers.raw)
        return response

    def _validate_batch_request(self, request_data: list[Any], protocol: str) -> None:
        """A batch is refused whole, before any of it runs: empty, over the cap, or with an
        item that is not an operation object."""
        if self.max_batch_size < 1:
            raise Refused(400, "Batching is not enabled.", "BATCHING_NOT_ENABLED")
        if not request_data:
            raise Refused(400, "A batch needs at least one operation.", "BAD_REQUEST")
        if len(request_data) > self.max_batch_size:
            message = f"A batch may hold at most {self.max_batch_size} operations."
            raise Refused(400, message, "BATCH_TOO_LARGE")
        if protocol != "http":
            raise Refused(400, "Batches are not streamed.", "BAD_REQUEST")
        for item in request_data:
            if not isinstance(item, dict):
                raise Refused(400, "Each operation of a batch must be an object.", "BAD_REQUEST")
            operation_of(item)

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Any,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        if not isinstance(request_data, list):
            return await super().execute_operation(  # type: ignore[misc]
                request, request_adapter, request_data, context, root_value, sub_response
            )
        # One after another, each with a context of its own: a mutation's effect is seen by
        # the operations after it, and no loader cache is shared between them.
        view: Any = self
        results = []
        for index, operation in enumerate(request_data):
            own_context = context if index == 0 else await view.get_context(request, sub_response)
            try:
                result = await self.execute_operation(
                    request, request_adapter, operation, own_context, root_value, sub_response
                )
            except HTTPException as exc:
                result = refused_result(exc)
            results.append(result)
        return results

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, with queries over GET in every environment and a mutation or a
        subscription over GET refused with 405 (the draft's answer), ``Allow: POST``."""
        return await self.execute_over(request_adapter.method, request_data, context, root_value)

    async def execute_over(
        self,
        method: HTTPMethod,
        request_data: GraphQLRequestData,
        context: Any,
        root_value: Any = None,
    ) -> ExecutionResult:
        """One operation sent with HTTP ``method``, through the schema; the JSON lane
        (graphql_schema/engine/json_posts.py) calls it for a POST directly."""
        view: Any = self
        try:
            result: ExecutionResult = await view.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=OperationType.from_http(method),
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise Refused(400, exc.as_http_error_reason(), "BAD_REQUEST") from exc
        except InvalidOperationTypeError as exc:
            reason = exc.as_http_error_reason(method)
            if method == "GET":
                raise Refused(405, reason, "METHOD_NOT_ALLOWED", {"allow": "POST"}) from exc
            raise Refused(400, reason, "BAD_REQUEST") from exc
        except MissingQueryError as exc:
            raise Refused(400, "No GraphQL query found in the request.", "BAD_REQUEST") from exc
        return result


__all__ = [
    "GRAPHQL_RESPONSE",
    "JSON",
    "GraphQLOverHTTP",
    "Refused",
    "is_request_error",
    "media_type_for",
]
