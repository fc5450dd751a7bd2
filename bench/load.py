"""HTTP load: wrk with a generated Lua script, or a bounded asyncio client as a fallback.

Both send the same requests: POSTs with a JSON body, a per-account bearer token where the
target wants one, and for mutations an idempotency key unique to each request.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

KEY = "@KEY@"


@dataclass(frozen=True)
class Call:
    """One account's request; ``body`` holds ``KEY`` where a unique key goes."""

    body: str
    authorization: str | None = None


@dataclass(frozen=True)
class LoadSpec:
    path: str
    calls: list[Call]


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    assert "]==]" not in text
    return f"[==[{text}]==]"


def lua_script(spec: LoadSpec, run_id: str) -> str:
    rows = []
    for call in spec.calls:
        pre, _, post = call.body.partition(KEY)
        auth = _lua_string(call.authorization) if call.authorization else "nil"
        keyed = "true" if KEY in call.body else "false"
        rows.append(f"{{pre={_lua_string(pre)}, post={_lua_string(post)}, auth={auth}, k={keyed}}}")
    table = ",\n".join(rows)
    return f"""
local calls = {{
{table}
}}
local n = #calls
local path = {_lua_string(spec.path)}
local run_id = {_lua_string(run_id)}
local counter = 0
local threads = {{}}
thread_id = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  counter = thread_id * 104729
end

function request()
  counter = counter + 1
  local c = calls[(counter % n) + 1]
  local body = c.pre
  if c.k then body = c.pre .. run_id .. "-" .. thread_id .. "-" .. counter .. c.post end
  local headers = {{["Content-Type"] = "application/json"}}
  if c.auth then headers["Authorization"] = c.auth end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT %d %d %d %d %d\\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(
    url: str,
    spec: LoadSpec,
    *,
    seconds: float,
    connections: int,
    run_id: str,
    workdir: Path,
    cpus: str | None = None,
) -> LoadResult:
    script = workdir / f"{run_id}.lua"
    script.write_text(lua_script(spec, run_id))
    threads = 1  # one wrk thread keeps up here and leaves the second core to server and database
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_RESULT"))
    requests, duration_us, errors, p50_us, p99_us = (int(x) for x in line.split()[1:])
    script.unlink()
    return LoadResult(requests, duration_us / 1e6, errors, p50_us / 1000, p99_us / 1000)


def run_python(
    url: str, spec: LoadSpec, *, seconds: float, connections: int, run_id: str
) -> LoadResult:
    """The fallback: ``connections`` keep-alive HTTP/1.1 connections, each one request at a time."""
    return asyncio.run(_python_load(url, spec, seconds, connections, run_id))


async def _python_load(
    url: str, spec: LoadSpec, seconds: float, connections: int, run_id: str
) -> LoadResult:
    host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    def request_bytes(worker: int, counter: int) -> bytes:
        call = spec.calls[counter % len(spec.calls)]
        body = call.body.replace(KEY, f"{run_id}-{worker}-{counter}").encode()
        auth = f"Authorization: {call.authorization}\r\n" if call.authorization else ""
        head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def worker(number: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        counter = number * 104729
        try:
            while time.perf_counter() < deadline:
                counter += 1
                started = time.perf_counter()
                writer.write(request_bytes(number, counter))
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i + 1) for i in range(connections)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(len(latencies), elapsed, errors, cuts[49] * 1000, cuts[98] * 1000)


def graphql_call(query: str, variables: dict[str, object], token: str) -> Call:
    return Call(json.dumps({"query": query, "variables": variables}), f"Bearer {token}")
