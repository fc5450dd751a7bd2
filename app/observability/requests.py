"""A request id per HTTP request or websocket, and one log line when it ends.

The GraphQL layer adds what only it knows (operation, result, account) to the current
:class:`RequestRecord`; the middleware logs the record with the status and duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.metrics import Metrics
from app.security.request_id import HEADER, request_id_for

logger = logging.getLogger("creditgate")
requests_log = logging.getLogger("creditgate.requests")

_HEADER = HEADER.encode("latin-1")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class RequestRecord:
    request_id: str
    operation: str | None = None
    result: str | None = None
    account_id: str | None = None


current_request: ContextVar[RequestRecord | None] = ContextVar("current_request", default=None)


class LineWriter(Protocol):
    def write(self, level: int, message: str, values: Mapping[str, Any]) -> bool: ...


# The request line's writer ``configure_logging`` installs with JSON lines (None: Logger.log).
request_lines: LineWriter | None = None


class RequestMiddleware:
    """The outermost layer: the request id, in-flight count, masked 500s and the log line.

    One ASGI layer for all four: served, each layer costs every request a coroutine and a
    wrapper around ``send``; merging the request-id and request-log layers was measured in
    bench/README.md.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        record = RequestRecord(request_id)
        token = current_request.set(record)
        started = time.perf_counter()
        http = kind == "http"
        status: int | str = 500 if http else "closed by client"
        responded = False
        path = scope.get("path", "")
        counted = http and path not in QUIET_PATHS
        if counted:
            self._metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                headers = message.get("headers", ())
                if any(name == _HEADER for name, _ in headers):
                    MutableHeaders(scope=message)[HEADER] = request_id
                else:  # the usual case, without building MutableHeaders: appended
                    message["headers"] = [*headers, (_HEADER, request_id.encode("latin-1"))]
            elif message["type"] == "websocket.close":
                status = message.get("code", 1000)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not http:
                raise
            # Outside GraphQL (a middleware, the context): logged with the id, answered masked.
            logger.exception("unexpected error, request %s", request_id)
            if responded:
                raise
            error = {"message": "Unexpected error.", "extensions": {"requestId": request_id}}
            await JSONResponse({"errors": [error]}, status_code=500)(scope, receive, send_with_id)
        finally:
            if counted:
                self._metrics.in_flight.dec()
            current_request.reset(token)
            method = scope.get("method", "WEBSOCKET")
            level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
            extra = {
                **vars(record),
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            lines = request_lines
            if lines is None or not lines.write(level, f"{method} {path} {status}", extra):
                requests_log.log(level, "%s %s %s", method, path, status, extra=extra)
