"""A server killed between commit and delivery loses no event, and a fair measure of the
delay from commit to delivery, on PostgreSQL with real server processes."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from datetime import datetime

import pytest

from tests.api_client import Api, Worker
from tests.conftest import JWT_SECRET
from tests.db import Rows
from tests.processes import Gateways, connected
from tests.servers import until
from tests.webhooks.conftest import create_endpoint
from tests.webhooks.receiver import HANG, Receiver

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]
# Run with --log-cli-level=INFO to read the counts and the delays measured.
log = logging.getLogger("tests.webhooks")

# A short timeout so the killed server's leases (2 x timeout + 5 s) run out soon.
ENV = {"CREDITGATE_WEBHOOK_TIMEOUT_SECONDS": "2"}


async def make_events(api: Api, accounts: int) -> None:
    """Per account: a subscription (credits.renewed) and a run that succeeds."""
    worker = Worker(api)
    for n in range(accounts):
        account_id = await api.subscribed_account()
        await api.run(account_id, "TURBO", key=f"run-{n}")
    for job in await worker.claim(accounts):
        await worker.complete(job["id"])


async def test_a_server_killed_between_commit_and_delivery_loses_no_event(
    gateways: Gateways,
    postgres_rows: Rows,
    receiver: Receiver,
) -> None:
    # given a server whose deliveries hang at the receiver
    receiver.answers = lambda _id: HANG
    server = await gateways.start(env=ENV)
    async with connected(server, JWT_SECRET) as api:
        await create_endpoint(api, receiver)
        await make_events(api, 20)
    committed = await postgres_rows.all("SELECT id FROM webhook_events")
    await until(lambda: receiver.hanging >= 1, seconds=30)
    # when it is killed with deliveries in flight and the rest still queued
    server.kill()
    unacknowledged = receiver.hanging
    receiver.answers = lambda _id: 200
    receiver.release()
    # ... and a server starts again
    await gateways.start(env=ENV)
    await until(lambda: len(receiver.events()) >= len(committed), seconds=90)
    # then every committed event reached the application once; none was lost
    assert {e for e in receiver.handled} == {r["id"] for r in committed}
    # ... and the server wrote each down as delivered (just after the receiver answered)
    query = "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status"
    all_delivered = [{"status": "DELIVERED", "n": len(committed)}]
    async with asyncio.timeout(30):
        while await postgres_rows.all(query) != all_delivered:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    sent = [r.webhook_id for r in receiver.requests]
    counts = {
        "events_committed": len(committed),
        # Sent and never answered before the kill (cut off at the timeout, or in flight).
        "unacknowledged_before_kill": unacknowledged,
        "requests_received": len(sent),
        "sent_twice": len(sent) - len(set(sent)),
        "handled_by_application": len(receiver.events()),
    }
    log.info("webhook crash counts: %s", counts)
    assert counts["sent_twice"] == unacknowledged  # only the unacknowledged ones came again


async def test_the_delay_from_commit_to_delivery_is_short(
    gateways: Gateways, postgres_rows: Rows, receiver: Receiver
) -> None:
    # given a receiver that notes when each event arrives
    arrived: dict[str, float] = {}

    def noting(webhook_id: str) -> int:
        arrived.setdefault(webhook_id, time.time())
        return 200

    receiver.answers = noting
    server = await gateways.start()
    async with connected(server, JWT_SECRET) as api:
        await create_endpoint(api, receiver, ["CREDITS_RENEWED"])
        # when 20 accounts subscribe one after another, then 100 ten at a time
        for n in range(20):
            await api.subscribed_account()
            await until(lambda: len(arrived) > n, seconds=10)  # noqa: B023 - awaited here
        one_by_one = set(arrived)
        for _ in range(10):
            await asyncio.gather(*(api.subscribed_account() for _ in range(10)))
    await until(lambda: len(arrived) >= 120, seconds=60)
    # then each arrived soon after its commit (the event row's instant, on the same clock)
    created: dict[str, datetime] = {
        r["id"]: r["created_at"]
        for r in await postgres_rows.all("SELECT id, created_at FROM webhook_events")
    }

    def delays(ids: set[str]) -> tuple[float, float]:
        measured = sorted(arrived[i] - created[i].timestamp() for i in ids)
        return statistics.median(measured), measured[max(0, int(len(measured) * 0.95) - 1)]

    alone = delays(one_by_one)
    burst = delays(set(arrived) - one_by_one)
    log.info("commit to delivery, one at a time (n=20): median %.3f s, p95 %.3f s", *alone)
    log.info("commit to delivery, ten at a time (n=100): median %.3f s, p95 %.3f s", *burst)
    assert alone[1] < 1.0 and burst[1] < 5.0, (alone, burst)
