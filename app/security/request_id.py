"""A request id for every HTTP request: echoed in ``X-Request-Id`` and kept on the ASGI scope.

A client's own ``X-Request-Id`` is reused when it is a short token, so a trace can span
services; anything else is replaced, so no header can smuggle text into the logs.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
logger = logging.getLogger("creditgate")


def request_id_of(scope: Scope) -> str | None:
    value = scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(HEADER, "")
        request_id = incoming if _SANE.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Outside GraphQL (a middleware, the context): log it with the id, answer masked.
            logger.exception("unexpected error, request %s", request_id)
            if started:
                raise
            error = {"message": "Unexpected error.", "extensions": {"requestId": request_id}}
            body = {"errors": [error]}
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
