"""A deadline for the request head: uvicorn has none (issue 12: 500 connections sending
half a header held for 20 s, and for as long as they liked).

uvicorn times out only an idle keep-alive connection (``timeout_keep_alive``), and any
byte received cancels that timer, so a client sending its head one byte at a time, or
nothing after connecting, holds a connection indefinitely. ``HeadTimeoutProtocol`` is
uvicorn's HTTP protocol (httptools, or h11 without it) with one more rule: whenever no
request is in progress (just connected, or the last response sent) and bytes of a head
arrive, the head must be complete within ``head_timeout`` seconds; a connection sending
nothing after connecting gets the same time. Else the connection is closed. The body has
its own deadline in the app (``HttpGuardsMiddleware``: 408).

It reads one attribute of uvicorn's protocols, ``cycle`` (the request being served, set
once its head is parsed), the same in the h11 and httptools implementations of uvicorn
0.54; a test drives it through a real ``creditgate serve`` process.

It also closes the way HTTP servers must when a client may still be sending (RFC 9112
section 9.6, nginx's ``lingering_close``): a plain ``close()`` with unread bytes in the
socket makes the kernel send a reset, which can destroy the response (a 408 for a body
still dripping in) before the client reads it. So the write side is shut first, whatever
still arrives is discarded, and the socket is closed when the client closes or after
``LINGER_SECONDS``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

LINGER_SECONDS = 2.0


class _LingeringTransport:
    """The transport as uvicorn's protocol sees it, except that ``close`` lingers."""

    def __init__(self, transport: Any, protocol: HeadTimeoutProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        transport = self._transport
        upgraded = transport.get_protocol() is not self._protocol
        lingered = self._protocol.lingering
        if lingered or upgraded or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        self._protocol.lingering = True
        transport.write_eof()  # sends what is buffered, then FIN
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)


class HeadTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout
        self._head_deadline: asyncio.TimerHandle | None = None
        self.lingering = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(_LingeringTransport(transport, self))
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the response is sent and the connection closing: discarded
        super().data_received(data)
        if self._between_requests():
            self._await_head()
        else:
            self._cancel_head_deadline()  # the head is in: the app bounds the body

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.transport.close()
            return None
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        cycle = getattr(self, "cycle", None)
        return cycle is None or bool(cycle.response_complete)

    def _await_head(self) -> None:
        if self._head_deadline is None:
            loop = asyncio.get_running_loop()
            self._head_deadline = loop.call_later(self._head_timeout, self._head_overdue)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        transport = self.transport
        # An upgraded connection (a websocket) has another protocol: not ours to close.
        if transport.is_closing() or transport.get_protocol() is not self:
            return
        if self._between_requests():
            transport.close()


def head_timeout_protocol(seconds: float) -> Callable[..., asyncio.Protocol]:
    """What ``uvicorn.run(http=...)`` takes; a partial of a module-level class, so it
    pickles to worker processes."""
    return functools.partial(HeadTimeoutProtocol, head_timeout=seconds)
