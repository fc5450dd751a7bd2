"""Stripe Checkout behind the payment port, with the official ``stripe`` SDK (async only).

Every call that writes at Stripe carries a deterministic Idempotency-Key made from the
purchase id, so a retry after a crash or a timeout reuses what Stripe already made. Every
answer is re-read from Stripe; a webhook body is only trusted for its id and what it names.

Errors are mapped here, once, so no ``stripe`` type leaves this module:

    ProviderUnavailable       network error, timeout, 5xx, 409, rate limit, refused API key:
                              transient or an operator's fix away, so the caller retries later
    PaymentObjectNotFound     Stripe has no such session, charge or dispute (404
                              ``resource_missing``): not transient, the id is not ours
      (a LookupError)
    StripeRequestRejected     any other 4xx (a bad parameter, a refund of a charge already
                              refunded: ``code`` says which): retrying the same will not help
    InvalidWebhook            a webhook whose signature, timestamp or body is not acceptable
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import stripe
from stripe.params.checkout import SessionListParams

from app.clock import Clock
from app.domain.purchases import PaymentState, ProviderName
from app.payments.port import (
    Checkout,
    CheckoutRequest,
    DisputeState,
    EventKind,
    InvalidWebhook,
    Payment,
    ProviderEvent,
    ProviderUnavailable,
    Reversal,
    ReversalKind,
)

log = logging.getLogger(__name__)

CHECKOUT_LIFETIME = timedelta(minutes=30)
# Stripe refuses an ``expires_at`` under 30 minutes after it creates the session; a minute
# more absorbs latency, SDK retries and clock skew between us and Stripe.
EXPIRY_MARGIN = timedelta(minutes=1)
PURCHASE_PLACEHOLDER = "{PURCHASE_ID}"
# Stripe keeps an idempotency key at least 24 hours; an hour more covers clock skew.
IDEMPOTENCY_WINDOW = timedelta(hours=25)
SESSION_PAGE = 100  # Stripe's largest list page

PAYMENT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
# ``charge.refund.updated`` too: a refund that was pending when ``charge.refunded`` fired
# is only applied once it has succeeded, and this is the event that says so.
REFUND_EVENTS = frozenset({"charge.refunded", "charge.refund.updated"})
DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.closed"})
# A PaymentIntent whose last attempt failed for good (an async method declined).
FAILED_INTENT_STATUSES = frozenset({"requires_payment_method", "canceled"})
# Dispute statuses where the money stays with us: won, an inquiry closed without a
# chargeback, a dispute prevented before it was filed.
DISPUTE_WON_STATUSES = frozenset({"won", "warning_closed", "prevented"})


class PaymentObjectNotFound(LookupError):
    """Stripe has no object with this id (or not in this account's mode)."""

    def __init__(self, object_id: str, message: str) -> None:
        super().__init__(f"Stripe has no {object_id!r}: {message}")
        self.object_id = object_id


class StripeRequestRejected(Exception):
    """Stripe refused the request as such; ``code`` is Stripe's (``charge_already_refunded``)."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"Stripe refused the request ({code}): {message}")
        self.code = code


@contextlib.contextmanager
def _stripe_errors(object_id: str) -> Iterator[None]:
    """Map the SDK's exceptions to the port's, at this one boundary."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise ProviderUnavailable(f"Stripe unavailable: {exc.user_message or exc}") from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        # Not transient, but nothing is lost by retrying once an operator fixes the key.
        log.error("Stripe refused the API key: %s", exc.user_message)
        raise ProviderUnavailable(f"Stripe refused the API key: {exc.user_message}") from exc
    except stripe.IdempotencyError as exc:
        raise StripeRequestRejected("idempotency_error", str(exc.user_message)) from exc
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404 or exc.code == "resource_missing":
            raise PaymentObjectNotFound(object_id, str(exc.user_message)) from exc
        raise StripeRequestRejected(exc.code, str(exc.user_message)) from exc
    except stripe.StripeError as exc:
        if exc.http_status is not None and exc.http_status >= 500:
            raise ProviderUnavailable(f"Stripe unavailable: {exc.user_message}") from exc
        raise StripeRequestRejected(exc.code, str(exc.user_message)) from exc


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, Mapping):
        return value.get("id")
    return value if isinstance(value, str) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


class StripeProvider:
    """Stripe Checkout Sessions in payment mode; refunds and disputes re-read from Stripe."""

    name = ProviderName.STRIPE

    def __init__(
        self,
        *,
        secret_key: str,
        webhook_secret: str,
        api_base: str,
        success_url: str,
        cancel_url: str,
        clock: Clock,
        max_network_retries: int = 2,
    ) -> None:
        self._webhook_secret = webhook_secret
        self._success_url = success_url
        self._cancel_url = cancel_url
        self._clock = clock
        self._http = stripe.HTTPXClient(timeout=10)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections (the app's lifespan calls this on shutdown)."""
        await self._http.close_async()

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a Checkout Session; the same purchase id gives the same session for 24 hours.

        The key ``checkout:{purchase_id}`` replays the session, but Stripe replays a key only
        with the same parameters, and ``expires_at`` moves with the clock: a retry a second or
        more later (after a timeout or a crash) is refused as ``idempotency_error``. The
        session that key made is then found among the sessions of the last day by its
        ``client_reference_id``; it may have expired meanwhile (``fetch_payment`` says so).
        """
        metadata = {
            "purchase_id": request.purchase_id,
            "account_id": request.account_id,
            "pack_id": request.pack_id,
        }
        expires_at = self._clock.now() + CHECKOUT_LIFETIME + EXPIRY_MARGIN
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount_cents,
                        "product_data": {"name": f"{request.credits} credits"},
                    },
                    "quantity": 1,
                }
            ],
            "client_reference_id": request.purchase_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "expires_at": int(expires_at.timestamp()),
            "success_url": self._success_url.replace(PURCHASE_PLACEHOLDER, request.purchase_id),
            "cancel_url": self._cancel_url.replace(PURCHASE_PLACEHOLDER, request.purchase_id),
        }
        try:
            with _stripe_errors(request.purchase_id):
                session = (
                    await self._client.v1.checkout.sessions.create_async(
                        params,  # type: ignore[arg-type]
                        {"idempotency_key": f"checkout:{request.purchase_id}"},
                    )
                ).to_dict()
        except StripeRequestRejected as refused:
            if refused.code != "idempotency_error":
                raise
            session = await self._find_checkout(request.purchase_id, refused)
        return Checkout(session_id=session["id"], url=session.get("url"), payment=None)

    async def _find_checkout(
        self, purchase_id: str, refused: StripeRequestRejected
    ) -> dict[str, Any]:
        """The newest session of the last day made for ``purchase_id`` (a rare, slow path)."""
        since = self._clock.now() - IDEMPOTENCY_WINDOW
        params: SessionListParams = {
            "created": {"gte": int(since.timestamp())},
            "limit": SESSION_PAGE,
        }
        while True:
            with _stripe_errors(purchase_id):
                page = (await self._client.v1.checkout.sessions.list_async(params)).to_dict()
            sessions = page.get("data") or []
            for session in sessions:  # newest first
                if session.get("client_reference_id") == purchase_id:
                    return dict(session)
            if not page.get("has_more") or not sessions:
                raise refused
            params["starting_after"] = sessions[-1]["id"]

    async def fetch_payment(self, session_id: str) -> Payment:
        """How the session stands at Stripe now, whatever an event said."""
        with _stripe_errors(session_id):
            found = await self._client.v1.checkout.sessions.retrieve_async(
                session_id, {"expand": ["payment_intent"]}
            )
        session = found.to_dict()
        intent = session.get("payment_intent")
        metadata = session.get("metadata") or {}
        currency = session.get("currency")
        return Payment(
            session_id=session["id"],
            state=_payment_state(session),
            purchase_id=session.get("client_reference_id") or metadata.get("purchase_id"),
            amount_cents=session.get("amount_total"),
            currency=currency.upper() if currency else None,
            payment_reference=_id_of(intent),
        )

    async def refund(self, payment_reference: str, *, purchase_id: str) -> Reversal:
        """Refund the whole PaymentIntent; ``refund:{purchase_id}`` makes a retry refund once."""
        with _stripe_errors(payment_reference):
            refund = await self._client.v1.refunds.create_async(
                {"payment_intent": payment_reference, "metadata": {"purchase_id": purchase_id}},
                {"idempotency_key": f"refund:{purchase_id}"},
            )
        return Reversal(ReversalKind.REFUND, refund.id, payment_reference, refund.amount)

    async def fetch_refunds(self, object_id: str) -> list[Reversal]:
        """The succeeded refunds of a Charge (the object of ``charge.refunded``), every page."""
        with _stripe_errors(object_id):
            found = await self._client.v1.charges.retrieve_async(object_id, {"expand": ["refunds"]})
            charge = found.to_dict()
            page = charge.get("refunds") or {}
            refunds = list(page.get("data") or [])
            # The expanded list holds the newest 10; the rest is paged from /v1/refunds.
            while page.get("has_more") and refunds:
                page = (
                    await self._client.v1.refunds.list_async(
                        {"charge": object_id, "limit": 100, "starting_after": refunds[-1]["id"]}
                    )
                ).to_dict()
                refunds.extend(page.get("data") or [])
        payment_reference = _id_of(charge.get("payment_intent")) or charge["id"]
        return [
            Reversal(ReversalKind.REFUND, refund["id"], payment_reference, refund["amount"])
            for refund in refunds
            if refund.get("status") == "succeeded"
        ]

    async def fetch_dispute(self, object_id: str) -> Reversal:
        """A Dispute as it stands; WON also when an inquiry closed without a chargeback."""
        with _stripe_errors(object_id):
            dispute = (await self._client.v1.disputes.retrieve_async(object_id)).to_dict()
            payment_reference = _id_of(dispute.get("payment_intent"))
            if payment_reference is None:
                charge_id = _id_of(dispute.get("charge")) or ""
                charge = await self._client.v1.charges.retrieve_async(charge_id)
                payment_reference = _id_of(charge.to_dict().get("payment_intent")) or charge_id
        status = dispute.get("status")
        if status in DISPUTE_WON_STATUSES:
            state = DisputeState.WON
        elif status == "lost":
            state = DisputeState.LOST
        else:
            state = DisputeState.OPEN
        return Reversal(
            ReversalKind.DISPUTE, dispute["id"], payment_reference, dispute["amount"], state
        )

    async def checkout_of_payment(self, payment_reference: str) -> str | None:
        """The Checkout Session that created a PaymentIntent (Stripe lists them by it)."""
        with _stripe_errors(payment_reference):
            page = await self._client.v1.checkout.sessions.list_async(
                {"payment_intent": payment_reference, "limit": 1}
            )
        sessions = page.to_dict().get("data") or []
        return str(sessions[0]["id"]) if sessions else None

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verify the raw body's signature (300 s tolerance) before parsing a byte of it."""
        signature = _header(headers, "stripe-signature")
        if not signature:
            raise InvalidWebhook("The Stripe-Signature header is missing.")
        try:
            event = self._client.construct_event(body, signature, self._webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(f"The Stripe signature does not verify: {exc}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
            raise InvalidWebhook(f"The webhook body is not a Stripe event: {exc}") from exc
        return _provider_event(event.to_dict())


def _payment_state(session: Mapping[str, Any]) -> PaymentState:
    status = session.get("status")
    payment_status = session.get("payment_status")
    if status == "expired":
        return PaymentState.EXPIRED
    if status != "complete":
        return PaymentState.OPEN
    if payment_status in ("paid", "no_payment_required"):
        return PaymentState.PAID
    intent = session.get("payment_intent")
    if isinstance(intent, Mapping) and intent.get("status") in FAILED_INTENT_STATUSES:
        return PaymentState.FAILED
    # Complete and unpaid with the payment still processing (a bank debit): wait.
    return PaymentState.OPEN


def _provider_event(event: Mapping[str, Any]) -> ProviderEvent:
    """What a verified event names and which fetch re-reads it; its body decides nothing."""
    event_id = event.get("id")
    event_type = event.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise InvalidWebhook("The webhook body is not a Stripe event: no id or type.")
    data = event.get("data")
    found = data.get("object") if isinstance(data, Mapping) else None
    obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    metadata = obj.get("metadata") or {}
    purchase_id = metadata.get("purchase_id") if isinstance(metadata, Mapping) else None
    object_id = _id_of(obj.get("id"))
    extra: dict[str, str] = {}
    if event_type in PAYMENT_EVENTS:
        kind = EventKind.PAYMENT
        purchase_id = obj.get("client_reference_id") or purchase_id
    elif event_type in REFUND_EVENTS:
        kind = EventKind.REFUNDS
        if event_type == "charge.refund.updated":  # the object is the Refund
            object_id = _id_of(obj.get("charge"))
    elif event_type in DISPUTE_EVENTS:
        kind = EventKind.DISPUTE
    else:
        return ProviderEvent(event_id, event_type, EventKind.IGNORED)
    if object_id is None:
        raise InvalidWebhook(f"The {event_type} event names no object to re-read.")
    payment_reference = _id_of(obj.get("payment_intent"))
    if payment_reference:
        extra["payment_reference"] = payment_reference
    return ProviderEvent(event_id, event_type, kind, object_id, purchase_id, extra)
