"""The delivery worker: in every server process, claims due deliveries and sends them.

Claims are short transactions (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single writer
on SQLite) that lease rows; sends run as tasks outside any transaction, at most
``per_endpoint`` at once to one endpoint from this process, so an endpoint that hangs holds
only its own share while every other endpoint's deliveries go on. A commit that wrote
outbox rows rings the doorbell (:meth:`DeliveryWorker.wake`); due retries are found by
polling every ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

from app.observability.metrics import Metrics
from app.services import webhooks
from app.services.deps import Services

log = logging.getLogger("creditgate.webhooks")

BATCH = 50


class DeliveryWorker:
    def __init__(
        self,
        services: Services,
        metrics: Metrics | None = None,
        *,
        per_endpoint: int = 8,
        poll_seconds: float = 1.0,
    ) -> None:
        self._services = services
        self._metrics = metrics
        self._per_endpoint = per_endpoint
        self._poll = poll_seconds
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.outcomes: Counter[str] = Counter()

    def wake(self) -> None:
        self._wake.set()

    async def claim_and_start(self) -> int:
        """Lease what is due (within each endpoint's room) and start sending it."""
        room = {e: self._per_endpoint - n for e, n in self._in_flight.items() if n}
        claimed = await webhooks.claim_due(self._services, BATCH, room, self._per_endpoint)
        for item in claimed:
            self._in_flight[item.endpoint_id] += 1
            task = asyncio.create_task(self._send(item), name=f"webhook-{item.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _send(self, item: webhooks.Claimed) -> None:
        try:
            outcome = await webhooks.attempt(item, self._services)
            self._observe(outcome)
        except Exception:  # the lease runs out and another attempt is made
            log.exception("webhook delivery %s failed unexpectedly", item.delivery_id)
        finally:
            self._in_flight[item.endpoint_id] -= 1
            if self._in_flight[item.endpoint_id] <= 0:
                del self._in_flight[item.endpoint_id]
            self._wake.set()  # room freed: more of that endpoint's queue may go

    def _observe(self, outcome: webhooks.Outcome) -> None:
        self.outcomes[outcome.result] += 1
        metrics = self._metrics
        if metrics is None or outcome.result == "gone":
            return
        metrics.webhook_deliveries.labels(outcome.event_type, outcome.result).inc()
        if outcome.latency_seconds is not None:
            metrics.webhook_latency.labels(outcome.event_type).observe(outcome.latency_seconds)
        if outcome.disabled_endpoint is not None:
            metrics.webhook_endpoints_disabled.inc()

    async def observe_queue(self) -> None:
        if self._metrics is None:
            return
        state = await webhooks.queue_state(self._services)
        self._metrics.webhook_queue_depth.set(state.depth)
        self._metrics.webhook_oldest_pending.set(state.oldest_pending_seconds)

    async def one_pass(self) -> Counter[str]:
        """Send everything due now and wait for the attempts (``creditgate webhooks
        deliver``); deliveries queued behind others of their account go in the same pass."""
        while await self.claim_and_start() or self._tasks:
            if self._tasks:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        await self.observe_queue()
        return self.outcomes

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        observed_at = 0.0
        while True:
            self._wake.clear()
            try:
                await self.claim_and_start()
                if loop.time() - observed_at >= 5.0:
                    observed_at = loop.time()
                    await self.observe_queue()
            except Exception:  # a failed claim must not stop the next one
                log.exception("webhook claim failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def running_delivery_worker(
    worker: DeliveryWorker | None,
) -> AsyncIterator[None]:
    if worker is None:
        yield
        return
    task = asyncio.create_task(worker.run_forever(), name="webhook-worker")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.stop()
