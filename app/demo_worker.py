"""A stand-in render farm for development: `make run` with no workers attached.

Without it, queued jobs sit until the timeout and the per-plan cap stops a developer after
two runs. It claims queued jobs through the same service as real workers and completes
each after a few seconds with a placeholder result, so front-end developers see QUEUED,
RUNNING and SUCCEEDED (and ``generationUpdated``) locally. Off in test and production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from app.domain.errors import CreditError
from app.services.deps import Services
from app.services.generations import claim_generations, complete_generation

log = logging.getLogger("creditgate.demo_worker")

# How often the worker looks for queued jobs, and how many it takes at a time.
POLL_SECONDS = 0.5
BATCH = 10
RESULT_URL = "https://demo.creditgate.invalid/results/{id}.glb"


async def work_forever(services: Services, seconds_per_job: float) -> None:
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                claimed = await claim_generations(None, BATCH, services)
            except Exception:  # a failed poll must not stop the next one
                log.exception("demo worker: claiming failed")
                claimed = []
            for generation in claimed:
                task = asyncio.create_task(
                    _complete_later(generation.id, services, seconds_per_job)
                )
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.sleep(POLL_SECONDS)
    finally:
        for task in running:
            task.cancel()


async def _complete_later(generation_id: str, services: Services, seconds: float) -> None:
    await asyncio.sleep(seconds)
    try:
        await complete_generation(generation_id, RESULT_URL.format(id=generation_id), services)
    except CreditError as exc:  # failed or timed out meanwhile: nothing to complete
        log.info("demo worker: %s", exc.message)


@contextlib.asynccontextmanager
async def running_demo_worker(
    services: Services, enabled: bool, seconds_per_job: float
) -> AsyncIterator[None]:
    if not enabled:
        yield
        return
    log.info(
        "demo worker on: queued jobs complete after %.1f s (a development aid)", seconds_per_job
    )
    task = asyncio.create_task(work_forever(services, seconds_per_job), name="demo-worker")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
