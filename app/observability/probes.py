"""/healthz (the process answers), /readyz (it can serve), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.events.live import LiveEvents
from app.observability.metrics import Metrics
from app.persistence.migrate import current_revision, head_revision
from app.services import live as live_reads
from app.services.deps import Services
from app.settings import Settings

PROBE_TIMEOUT_SECONDS = 2.0


class Probes:
    def __init__(
        self, services: Services, live: LiveEvents, metrics: Metrics, settings: Settings
    ) -> None:
        self._services = services
        self._live = live
        self._metrics = metrics
        self._head = head_revision(settings.database_url)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(self, _request: Request) -> Response:
        problems: list[str] = []
        revision = None
        try:
            revision = await asyncio.wait_for(
                current_revision(self._services.db.engine), PROBE_TIMEOUT_SECONDS
            )
        except Exception:
            problems.append("database unreachable")
        else:
            if revision != self._head:
                problems.append("migrations not at head")
        if not self._live.bus.ready:
            problems.append("event listener not connected")
        body = {
            "status": "not ready" if problems else "ready",
            "problems": problems,
            "revision": revision,
            "head": self._head,
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    async def metrics(self, _request: Request) -> Response:
        try:
            holds = await asyncio.wait_for(
                live_reads.open_holds(self._services), PROBE_TIMEOUT_SECONDS
            )
            self._metrics.open_holds.set(holds)
        except Exception:
            # Scrapes must not fail with the database: the gauge keeps its last value.
            pass
        return Response(self._metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
