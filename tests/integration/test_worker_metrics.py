"""`creditgate serve --workers N`: /metrics on any worker adds up every worker's counters.

The workers count into prometheus-client's multiprocess files in ``CREDITGATE_METRICS_DIR``;
the test reads those files per worker (so it knows the requests really were spread) and
compares what scrapes say with the sum.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.clock import FrozenClock
from tests.api_client import Api
from tests.conftest import JWT_SECRET
from tests.live.test_subscriptions import CREDITS_CHANGED
from tests.processes import GatewayProcess, Gateways
from tests.servers import until, ws_session

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

WORKERS = 3
RUNS = 60
RUN_SAMPLE = (
    "creditgate_graphql_requests_total",
    (("operation", "Run"), ("result", "GeneratorRun"), ("type", "mutation")),
)
SUBSCRIPTIONS_SAMPLE = ("creditgate_websocket_subscriptions", (("field", "creditsChanged"),))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def runs_per_worker(directory: Path) -> dict[int, float]:
    """Successful runs each worker counted, read from its own counter file."""
    counted: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        families = MultiProcessCollector.merge([str(path)], accumulate=True)
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families
            for s in family.samples
        }
        counted[pid] = found.get(RUN_SAMPLE, 0.0)
    return counted


@asynccontextmanager
async def fresh_connections(server: GatewayProcess) -> AsyncIterator[Api]:
    """A client that opens a new connection per request: each is accepted by any worker."""
    async with httpx.AsyncClient(
        base_url=server.base_url,
        timeout=30.0,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        yield Api(client, JWT_SECRET, FrozenClock(datetime.now(UTC)))


def started_workers(server: GatewayProcess) -> int:
    return sum("Started server process" in line for line in server.log().splitlines())


async def serve_workers(gateways: Gateways, directory: Path, workers: int) -> GatewayProcess:
    server = await gateways.start(
        args=("--workers", str(workers)),
        env={"CREDITGATE_METRICS_DIR": str(directory), "CREDITGATE_DB_POOL_SIZE": "3"},
    )
    # /readyz answered by one worker says nothing of the others: wait until all run.
    await until(lambda: started_workers(server) == workers, seconds=30)
    return server


async def test_a_scrape_of_any_worker_sums_the_counters_of_all_workers(
    gateways: Gateways, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    # given an earlier serve that left its counters in the folder
    earlier = await serve_workers(gateways, directory, 2)
    async with fresh_connections(earlier) as api:
        account_id = await api.subscribed_account("PRO")
        for i in range(5):
            await api.run(account_id, "TURBO", key=f"earlier-{i}")
    earlier.stop()
    assert sum(runs_per_worker(directory).values()) == 5

    # when a new serve with three workers takes 60 runs over fresh connections
    server = await serve_workers(gateways, directory, WORKERS)
    async with fresh_connections(server) as api:
        account_id = await api.subscribed_account("PRO")
        results = await asyncio.gather(
            *(api.run(account_id, "TURBO", key=f"spread-{i}") for i in range(RUNS))
        )
        assert {r["__typename"] for r in results} == {"GeneratorRun"}
        # ... and four subscribers hold a websocket each, on whichever worker took it
        async with (
            ws_session(server.address, api.token(account_id)) as s1,
            ws_session(server.address, api.token(account_id)) as s2,
            ws_session(server.address, api.token(account_id)) as s3,
            ws_session(server.address, api.token(account_id)) as s4,
        ):
            for session in (s1, s2, s3, s4):
                await session.subscribe(CREDITS_CHANGED).next()
            scrapes = [(await api.client.get("/metrics")).text for _ in range(6)]

    # then the runs were spread over several workers (their own files say so) ...
    per_worker = runs_per_worker(directory)
    assert sum(per_worker.values()) == RUNS, per_worker
    assert sum(1 for count in per_worker.values() if count) >= 2, per_worker
    # ... and every scrape, whichever worker answered it, shows the sum and only this serve's
    for text in scrapes:
        found = samples(text)
        assert found[RUN_SAMPLE] == RUNS
        assert found[SUBSCRIPTIONS_SAMPLE] == 4
    assert gateways.errors() == {}
    print(f"\n{RUNS} runs over {WORKERS} workers: {sorted(per_worker.values())} per worker")
