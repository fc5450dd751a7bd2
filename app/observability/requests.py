"""A request id per HTTP request or websocket, and one log line when it ends.

The GraphQL layer adds what only it knows (operation, result, account) to the current
:class:`RequestRecord`; the middleware logs the record with the status and duration.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.metrics import Metrics
from app.security.request_id import request_id_of

logger = logging.getLogger("creditgate.requests")

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class RequestRecord:
    request_id: str
    operation: str | None = None
    result: str | None = None
    account_id: str | None = None


current_request: ContextVar[RequestRecord | None] = ContextVar("current_request", default=None)


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # The id RequestIdMiddleware (outside this one) chose and echoes in X-Request-Id.
        record = RequestRecord(request_id_of(scope) or uuid.uuid4().hex)
        token = current_request.set(record)
        started = time.perf_counter()
        status: int | str = 500 if scope["type"] == "http" else "closed by client"
        path = scope.get("path", "")
        counted = scope["type"] == "http" and path not in QUIET_PATHS
        if counted:
            self._metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.close":
                status = message.get("code", 1000)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if counted:
                self._metrics.in_flight.dec()
            current_request.reset(token)
            level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
            logger.log(
                level,
                "%s %s %s",
                scope.get("method", "WEBSOCKET"),
                path,
                status,
                extra={
                    **vars(record),
                    "method": scope.get("method", "WEBSOCKET"),
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
