"""A background task per server process that runs the maintenance sweep on an interval.

Several processes may sweep at once: every step locks its account row, so the work is done
once and the others find nothing due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from app.services.deps import Services
from app.services.maintenance import sweep
from app.services.payment_events import reconcile
from app.services.store_purchases import reconcile_stores

log = logging.getLogger("creditgate.sweeper")


async def sweep_forever(services: Services, interval_seconds: float) -> None:
    while True:
        try:
            report = await sweep(services)
            if report.renewed_accounts or report.released_generations:
                log.info(
                    "sweep renewed %d accounts, released %d timed-out generations",
                    report.renewed_accounts,
                    report.released_generations,
                )
            reconciled = await reconcile(services)
            if reconciled:
                log.info("sweep reconciled %d pack purchases with the provider", reconciled)
            if services.stores:
                stored = await reconcile_stores(services)
                if stored:
                    log.info("sweep finished or reversed %d store purchases", stored)
        except Exception:  # a failed sweep must not stop the next one
            log.exception("sweep failed")
        await asyncio.sleep(interval_seconds)


@contextlib.asynccontextmanager
async def running_sweeper(services: Services, interval_seconds: float) -> AsyncIterator[None]:
    if interval_seconds <= 0:
        yield
        return
    task = asyncio.create_task(sweep_forever(services, interval_seconds), name="sweeper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
