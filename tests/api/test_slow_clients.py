"""Slow clients cannot hold connections: a request head must arrive in time (else the
connection is closed) and so must its body (else 408). Through a real ``creditgate serve``
process and raw sockets (issue 12, item 9), with deadlines of one second."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import JWT_SECRET
from tests.processes import GatewayProcess

# Generous: the deadlines under test are one second; this only stops a broken test hanging.
GIVE_UP_SECONDS = 30.0
DRIP_SECONDS = 0.2


@pytest.fixture
async def server(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    database = tmp_path / "creditgate.sqlite3"
    shutil.copy(sqlite_template, database)
    env: dict[str, str | None] = {
        "CREDITGATE_HEADER_READ_TIMEOUT_SECONDS": "1",
        "CREDITGATE_BODY_READ_TIMEOUT_SECONDS": "1",
    }
    process = GatewayProcess(f"sqlite+aiosqlite:///{database}", JWT_SECRET, tmp_path, env=env)
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop()


async def _drip(writer: asyncio.StreamWriter, byte: bytes, every: float) -> None:
    """Send ``byte`` again and again, every ``every`` seconds, until the server hangs up."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(byte)
            await writer.drain()
            await asyncio.sleep(every)


async def _answer_while_dripping(
    server: GatewayProcess, start: bytes, byte: bytes, every: float = DRIP_SECONDS
) -> bytes:
    """Everything the server sends until it closes, while the client drips ``byte``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(start)
    dripping = asyncio.create_task(_drip(writer, byte, every))
    try:
        async with asyncio.timeout(GIVE_UP_SECONDS):
            return await reader.read()  # until EOF
    finally:
        dripping.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await dripping


async def test_a_body_dripped_slowly_is_answered_408_and_the_connection_closed(
    server: GatewayProcess,
) -> None:
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n" + b'{"query": "'
    )

    answer = await _answer_while_dripping(server, head, b" ")

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:200]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"


async def test_the_server_lingers_after_a_closing_answer_so_late_bytes_do_not_reset_it(
    server: GatewayProcess,
) -> None:
    """A plain close with bytes still arriving makes the server's kernel send a reset,
    which can destroy an answer (a 408 for a body still dripping in) before the client
    reads it. The server shuts its side and keeps reading for a while instead: bytes sent
    after the answer are taken, not answered with a reset."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(GIVE_UP_SECONDS):
            answer = await reader.read()  # until the server's FIN
        for _ in range(5):
            writer.write(b"bytes the server will never answer")
            await writer.drain()
            await asyncio.sleep(0.05)
        assert not writer.is_closing()
    finally:
        writer.close()

    assert answer.startswith(b"HTTP/1.1 "), answer[:200]


async def test_a_request_head_dripped_slowly_gets_the_connection_closed(
    server: GatewayProcess,
) -> None:
    answer = await _answer_while_dripping(
        server, b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a"
    )

    assert answer == b""


async def test_a_connection_that_sends_nothing_is_closed(server: GatewayProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        async with asyncio.timeout(GIVE_UP_SECONDS):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_prompt_requests_on_a_kept_alive_connection_are_served(
    server: GatewayProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        for _ in range(3):
            response = await client.post("/graphql", json={"query": "{ plans { plan } }"})
            assert response.status_code == 200
            assert response.json()["data"]["plans"]
