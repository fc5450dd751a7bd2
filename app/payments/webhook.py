"""``POST /payments/<provider>/webhook``: verified at the edge, acted on once, then 2xx.

The raw body is verified before anything parses it; a bad, stale or tampered signature is
HTTP 400 with nothing written. The answer is 2xx only after the effect committed, and 5xx
on a transient failure so the provider sends the event again; an event for a purchase that
is not ours is 200 (logged), since a redelivery would not change that.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.domain.purchases import ProviderName
from app.observability.metrics import Metrics
from app.payments.port import InvalidWebhook, ProviderUnavailable
from app.services.deps import Services
from app.services.payment_events import handle_event
from app.services.store_purchases import handle_store_notice

log = logging.getLogger("creditgate.payments")


class ProviderWebhook:
    def __init__(self, services: Services, metrics: Metrics | None = None) -> None:
        self._services = services
        self._metrics = metrics

    async def handle(self, request: Request) -> JSONResponse:
        provider = self._services.payments
        body = await request.body()
        try:
            event = provider.verify_webhook(body, request.headers)
        except InvalidWebhook as exc:
            log.warning("%s webhook refused: %s", provider.name, exc)
            self._count("unverified", "refused")
            return JSONResponse({"error": "invalid signature or payload"}, status_code=400)
        try:
            outcome = await handle_event(event, self._services)
        except ProviderUnavailable:
            log.warning(
                "%s event %s: provider unavailable, asking for a retry",
                provider.name,
                event.event_id,
            )
            self._count(event.event_type, "retry")
            return JSONResponse({"error": "try again"}, status_code=503)
        except Exception:
            log.exception("%s event %s failed", provider.name, event.event_id)
            self._count(event.event_type, "error")
            return JSONResponse({"error": "internal error"}, status_code=500)
        log.info("%s event %s (%s): %s", provider.name, event.event_id, event.event_type, outcome)
        self._count(event.event_type, outcome)
        return JSONResponse({"received": True, "outcome": outcome})

    def _count(self, event_type: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_webhook(self._services.payments.name.value, event_type, outcome)


class StoreWebhook:
    """``POST /payments/apple/notifications`` and ``POST /payments/google/rtdn``.

    The same contract as the card webhook: verified before anything is parsed (HTTP 400
    otherwise, nothing written), deduplicated by the store's id (Apple's notificationUUID,
    Pub/Sub's messageId), 2xx only after the effect committed, 503 when the store could not
    be asked so that it sends the notification again.
    """

    def __init__(
        self, services: Services, provider: ProviderName, metrics: Metrics | None = None
    ) -> None:
        self._services = services
        self._provider = provider
        self._metrics = metrics

    async def handle(self, request: Request) -> JSONResponse:
        store = self._services.stores.get(self._provider)
        if store is None:
            return JSONResponse({"error": "this store is not configured"}, status_code=404)
        body = await request.body()
        try:
            notice = await store.verify_notification(body, request.headers)
        except InvalidWebhook as exc:
            log.warning("%s notification refused: %s", self._provider, exc)
            self._count("unverified", "refused")
            return JSONResponse({"error": "invalid signature or payload"}, status_code=400)
        except ProviderUnavailable as exc:
            log.warning("%s notification not verifiable now: %s", self._provider, exc)
            self._count("unverified", "retry")
            return JSONResponse({"error": "try again"}, status_code=503)
        try:
            outcome = await handle_store_notice(self._provider, notice, self._services)
        except ProviderUnavailable:
            log.warning("%s notification %s: store unavailable", self._provider, notice.event_id)
            self._count(notice.event_type, "retry")
            return JSONResponse({"error": "try again"}, status_code=503)
        except Exception:
            log.exception("%s notification %s failed", self._provider, notice.event_id)
            self._count(notice.event_type, "error")
            return JSONResponse({"error": "internal error"}, status_code=500)
        log.info(
            "%s notification %s (%s): %s",
            self._provider,
            notice.event_id,
            notice.event_type,
            outcome,
        )
        self._count(notice.event_type, outcome)
        return JSONResponse({"received": True, "outcome": outcome})

    def _count(self, event_type: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_webhook(self._provider.value, event_type, outcome)
