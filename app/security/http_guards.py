"""Guards that answer before GraphQL does any work: body size (413) and content type (415)."""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def has_lone_surrogate(text: str, payload: object) -> bool:
    """True if JSON ``text`` held an unpaired ``\\ud800``-style escape, which no database
    can store; checked only when such an escape appears at all."""
    if not _ESCAPED_SURROGATE.search(text):
        return False
    try:
        json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


class BodySizeLimitMiddleware:
    """Refuse a request body over ``max_bytes`` with 413.

    A declared ``Content-Length`` is judged before anything is read; a chunked body is read
    only up to the limit, then replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large()(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> JSONResponse:
        message = f"The request body may be at most {self.max_bytes} bytes."
        return _refusal(413, "PAYLOAD_TOO_LARGE", message)


class JsonPostsOnlyMiddleware:
    """POSTs to ``paths`` must be ``application/json``, else 415.

    Form and text posts are what a browser sends cross-site without a CORS preflight,
    so refusing them keeps mutations out of reach of CSRF.
    """

    def __init__(self, app: ASGIApp, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            content_type = Headers(scope=scope).get("content-type", "")
            if content_type.partition(";")[0].strip().lower() != "application/json":
                message = "POST a JSON body: Content-Type: application/json."
                refusal = _refusal(415, "UNSUPPORTED_MEDIA_TYPE", message)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
