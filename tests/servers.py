"""Real servers for tests: uvicorn in this event loop, and websocket clients for them.

Servers bind 127.0.0.1 on a free port and are always stopped when the test ends, whatever
happened. ``creditgate serve`` processes are in tests/processes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import uvicorn
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.websockets import WebsocketsTransport

from tests.processes import free_port

NEXT_TIMEOUT = 5.0


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan included) with uvicorn in this loop; yields host:port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Stream:
    """A subscription's results, each awaited with a timeout."""

    def __init__(self, results: AsyncGenerator[dict[str, Any], None]) -> None:
        self._results = results

    async def next(self, seconds: float = NEXT_TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(anext(self._results), seconds)

    async def close(self) -> None:
        await self._results.aclose()


class LiveSession:
    """A graphql-transport-ws connection; its subscriptions end when it closes."""

    def __init__(self, session: AsyncClientSession) -> None:
        self._session = session
        self._streams: list[Stream] = []

    def subscribe(self, document: str, variables: dict[str, Any] | None = None) -> Stream:
        """Subscribe; gql sends the subscribe message at the first ``next()``."""
        request = GraphQLRequest(document, variable_values=variables)
        stream = Stream(self._session.subscribe(request))
        self._streams.append(stream)
        return stream

    async def close(self) -> None:
        for stream in self._streams:
            with suppress(Exception):
                await stream.close()


@asynccontextmanager
async def ws_session(
    address: str, token: str, *, key: str = "Authorization"
) -> AsyncIterator[LiveSession]:
    transport = WebsocketsTransport(
        url=f"ws://{address}/graphql",
        init_payload={key: f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        close_timeout=2,
    )
    async with Client(transport=transport) as session:
        live = LiveSession(session)
        try:
            yield live
        finally:
            await live.close()


async def until(condition: Callable[[], bool], seconds: float = NEXT_TIMEOUT) -> None:
    """Wait for something another task will make true (polling: it has no event to await)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
