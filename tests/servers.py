"""Real servers for tests: uvicorn in this event loop, or `creditgate serve` processes.

Servers bind 127.0.0.1 on a free port and are always stopped (and processes killed) when
the test ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.websockets import WebsocketsTransport

ROOT = Path(__file__).resolve().parent.parent
CREDITGATE = Path(sys.executable).with_name("creditgate")
NEXT_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        stream = Stream(self._session.subscribe(request))  # type: ignore[arg-type]
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


class ServerProcess:
    """One `creditgate serve` process; its stdout and stderr go to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(CREDITGATE),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *extra_args,
            ],
            env={**os.environ, **env},
            cwd=log_path.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.address}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


@contextmanager
def server_processes(
    count: int, env: dict[str, str], directory: Path, *extra_args: str
) -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    try:
        for i in range(count):
            servers.append(ServerProcess(env, directory / f"server-{i}.log", *extra_args))
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
