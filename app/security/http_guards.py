"""Guards that answer before GraphQL does any work: body size (413), content type (415) and
a body that takes too long to arrive (408)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from typing import Any

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


# Deeper than any input of the schema could use; past it, recursive code (the NUL guard,
# graphql-core's coercion, the JSON encoder) would hit Python's recursion limit (a 500).
MAX_JSON_DEPTH = 32


def nested_deeper_than(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if JSON ``value`` nests lists and objects more than ``limit`` deep (no recursion:
    a hostile body is exactly what would exhaust it)."""
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status, headers=headers)


def media_type(content_type: str | None) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8`` (media types ignore case)."""
    return (content_type or "").partition(";")[0].strip().lower()


def _length_and_type(scope: Scope) -> tuple[str | None, str | None]:
    """The first ``Content-Length`` and ``Content-Type``, as ``Headers(scope).get`` reads
    them (ASGI header names are lower case), in one pass over the raw headers and without
    building ``Headers``."""
    length = kind = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            if length is None:
                length = value.decode("latin-1")
        elif name == b"content-type" and kind is None:
            kind = value.decode("latin-1")
    return length, kind


class Deadlines:
    """Tasks cancelled ``seconds`` after they start waiting, unless they stop first: one
    timer for all of them, where ``asyncio.timeout`` arms and cancels one per request
    (4.2 us a request on uvloop; this ~0.5). Every wait lasts the same ``seconds``, so the
    waiting tasks' deadlines are in the order they started: the timer is set for the first.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # another event loop (tests): nothing carries over
            self._loop, self._timer = loop, None
            self._waiting.clear()
            self._expired.clear()
        deadline = loop.time() + self.seconds
        self._waiting[task] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def forget(self, task: asyncio.Task[Any]) -> None:
        self._waiting.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the cancellation ``task`` sees is this deadline's (then taken back, as
        ``asyncio.timeout`` does), not one from outside."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _expire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        for task, deadline in list(self._waiting.items()):
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            del self._waiting[task]
            self._expired.add(task)
            task.cancel()


class HttpGuardsMiddleware:
    """Refuse, before the app reads anything: a body over ``max_bytes`` (413), a POST to
    ``json_paths`` that is not ``application/json`` (415), and a body not all there within
    ``body_timeout`` seconds (408, and the connection closed).

    Form and text posts are what a browser sends cross-site without a CORS preflight, so
    refusing them keeps mutations out of reach of CSRF. A declared ``Content-Length`` is
    judged before anything is read; a chunked body is read only up to the limit, then
    replayed to the app. One layer for the guards (bench/README.md).

    uvicorn bounds no request body in time: a client dripping one byte a second would hold
    a connection, and its request's memory, for as long as it likes.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        json_paths: tuple[str, ...],
        body_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.json_paths = json_paths
        self.body_timeout = body_timeout
        self._deadlines = Deadlines(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, content_type = _length_and_type(scope)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large()(scope, receive, send)
            return
        if (
            scope["method"] == "POST"
            and scope["path"] in self.json_paths
            and media_type(content_type) != "application/json"
        ):
            message = "POST a JSON body: Content-Type: application/json."
            await _refusal(415, "UNSUPPORTED_MEDIA_TYPE", message)(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        self._deadlines.watch(task)
        try:
            body_message = await self._whole_body(receive)
        except asyncio.CancelledError:
            if not self._deadlines.expired(task):
                raise
            message = f"The request body must arrive within {self.body_timeout:g} seconds."
            refusal = _refusal(408, "REQUEST_TIMEOUT", message, {"connection": "close"})
            await refusal(scope, receive, send)
            return
        finally:
            self._deadlines.forget(task)
        if body_message is None:
            return  # the client went away
        if len(body_message.get("body", b"")) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return body_message

        await self.app(scope, replay, send)

    async def _whole_body(self, receive: Receive) -> Message | None:
        """The body as one message: the first as it is when it holds it all (the usual case,
        no copy), else the parts joined, read no further than just past the limit."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        if not message.get("more_body", False):
            return message
        body = bytearray(message.get("body", b""))
        while message.get("more_body", False) and len(body) <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    def _too_large(self) -> JSONResponse:
        message = f"The request body may be at most {self.max_bytes} bytes."
        return _refusal(413, "PAYLOAD_TOO_LARGE", message)
