"""The request nearly every client sends, one operation POSTed as JSON, answered directly.

Strawberry's HTTP view serves every transport (GET, multipart uploads, streaming, batches,
the IDE, websockets) through one path. Per POST that path parses the content type through
``email.message``, builds a sub-response, matches streaming transports against ``Accept``
and checks the result against runtime protocols: served, more CPU than some of the
operations it runs (bench/README.md). ``JsonPostLane`` answers a JSON object POSTed with
``Content-Type: application/json`` through the same hooks (``decode_json``, ``get_context``,
``admitted``, ``execute_over``, ``process_result``, ``encode_json``, ``graphql_response``), so
hardening, trusted documents, persisted queries, media types and error handling stay where
they are; anything else takes Strawberry's own path, with the
body already read. A test compares both paths' answers request by request.
"""

from __future__ import annotations

from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from strawberry.http import GraphQLRequestData
from strawberry.types.unset import UNSET

from app.security.http_guards import media_type


def request_data(payload: dict[str, Any]) -> GraphQLRequestData:
    """The operation in a JSON object, refused with Strawberry's own 400s when malformed."""
    query, variables, extensions = (
        payload.get("query"),
        payload.get("variables"),
        payload.get("extensions"),
    )
    if not isinstance(query, str | None):
        raise HTTPException(
            400, "The GraphQL operation's `query` must be a string or null, if provided."
        )
    if not isinstance(variables, dict | None):
        raise HTTPException(
            400, "The GraphQL operation's `variables` must be an object or null, if provided."
        )
    if not isinstance(extensions, dict | None):
        raise HTTPException(
            400, "The GraphQL operation's `extensions` must be an object or null, if provided."
        )
    return GraphQLRequestData(
        query=query,
        variables=variables,
        operation_name=payload.get("operationName"),
        extensions=extensions,
        protocol="http",
    )


class JsonPostLane:
    """Mixed into a ``strawberry.asgi.GraphQL`` view whose context takes no sub-response
    (the lane has none to give: headers and status come from the result alone)."""

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        view: Any = self
        if (
            isinstance(request, Request)
            and request.method == "POST"
            and context is UNSET
            and root_value is UNSET
            and media_type(request.headers.get("content-type")) == "application/json"
            and not (
                view._stream_transport_map
                and view._get_stream_transport_from_headers(request.headers)
            )
        ):
            payload = view.parse_json(await request.body())
            if isinstance(payload, dict):
                return await self._answer(request, payload)
            # A batch or a bare value: Strawberry's answer (Starlette keeps the read body).
        return await super().run(request, context, root_value)  # type: ignore[misc]

    async def _answer(self, request: Request, payload: dict[str, Any]) -> Response:
        view: Any = self
        operation = request_data(payload)
        context = await view.get_context(request, response=None)
        # What Strawberry's execute_operation does for one operation over HTTP, without its
        # adapter and stream checks (none applies to a JSON POST): admitted by the trusted
        # documents and persisted queries (app/hardening.py), then executed as a POST.
        result = await view.admitted(
            operation, context, lambda data: view.execute_over("POST", data, context)
        )
        response_data = await view.process_result(request=request, result=result)
        if result.errors:
            view._handle_errors(result.errors, response_data)
        # Media type, status and body chosen as on Strawberry's path (over_http.py).
        return view.graphql_response(request.headers.get("accept"), response_data)
