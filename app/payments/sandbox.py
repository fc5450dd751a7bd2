"""The sandbox provider: payments with no account anywhere, for development and tests.

By default a checkout is paid the moment it is opened, so ``make run`` credits packs at
once through the same fulfilment as real payments. With ``pending`` checkouts stay open
until ``sandboxSettlePayment`` says how they end, so front-ends can build the pending,
failed, refunded and disputed screens. Its books live in this process: a restart forgets
unsettled sandbox checkouts, which then read as expired, while checkouts of the default
mode read as paid (the sale is written into the session id), so a server restarted in the
middle of a purchase finishes it as it would have.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.domain.purchases import PaymentState, ProviderName
from app.payments.port import (
    Checkout,
    CheckoutRequest,
    DisputeState,
    EventKind,
    InvalidWebhook,
    Payment,
    ProviderEvent,
    Reversal,
    ReversalKind,
)


class SandboxOutcome(enum.StrEnum):
    PAID = "PAID"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    REFUNDED = "REFUNDED"
    DISPUTED = "DISPUTED"
    DISPUTE_WON = "DISPUTE_WON"
    DISPUTE_LOST = "DISPUTE_LOST"


@dataclass(slots=True)
class _SandboxPayment:
    request: CheckoutRequest
    state: PaymentState
    refunds: dict[str, int] = field(default_factory=dict)
    dispute: DisputeState | None = None

    @property
    def reference(self) -> str:
        return f"sandbox_pay_{_sale_suffix(self.request)}"


def _sale_suffix(request: CheckoutRequest) -> str:
    return f"{request.purchase_id}.{request.amount_cents}.{request.currency}"


def _sale_of(object_id: str) -> CheckoutRequest | None:
    """The sale a sandbox session or payment id was made for (ids carry it)."""
    _, _, suffix = object_id.partition("_cs_" if "_cs_" in object_id else "_pay_")
    parts = suffix.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    purchase_id, amount, currency = parts
    return CheckoutRequest(purchase_id, "", "", 0, int(amount), currency)


class SandboxProvider:
    name = ProviderName.SANDBOX

    def __init__(self, *, pay_at_once: bool = True, success_url: str = "") -> None:
        self._pay_at_once = pay_at_once
        self._success_url = success_url
        self._payments: dict[str, _SandboxPayment] = {}

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        session_id = f"sandbox_cs_{_sale_suffix(request)}"
        payment = self._payments.get(session_id)
        if payment is None:
            state = PaymentState.PAID if self._pay_at_once else PaymentState.OPEN
            payment = self._payments[session_id] = _SandboxPayment(request, state)
        url = self._success_url.replace("{PURCHASE_ID}", request.purchase_id) or None
        paid = self._payment(session_id, payment)
        return Checkout(session_id, url, paid if paid.state is PaymentState.PAID else None)

    async def fetch_payment(self, session_id: str) -> Payment:
        payment = self._recall(session_id)
        if payment is None:
            return Payment(session_id, PaymentState.EXPIRED, None, None, None)
        return self._payment(session_id, payment)

    def _recall(self, session_id: str) -> _SandboxPayment | None:
        """What this process knows of a session; after a restart, what its id says."""
        payment = self._payments.get(session_id)
        sale = _sale_of(session_id)
        if payment is None and self._pay_at_once and sale is not None:
            payment = self._payments[session_id] = _SandboxPayment(sale, PaymentState.PAID)
        return payment

    async def refund(self, payment_reference: str, *, purchase_id: str) -> Reversal:
        payment = self._by_reference(payment_reference)
        refund_id = f"sandbox_re_{purchase_id}"
        payment.refunds.setdefault(refund_id, payment.request.amount_cents)
        return Reversal(
            ReversalKind.REFUND, refund_id, payment_reference, payment.refunds[refund_id]
        )

    async def fetch_refunds(self, object_id: str) -> list[Reversal]:
        payment = self._by_reference(object_id)
        return [
            Reversal(ReversalKind.REFUND, refund_id, object_id, amount)
            for refund_id, amount in payment.refunds.items()
        ]

    async def fetch_dispute(self, object_id: str) -> Reversal:
        reference = object_id.replace("sandbox_dp_", "sandbox_pay_", 1)
        payment = self._by_reference(reference)
        assert payment.dispute is not None
        return Reversal(
            ReversalKind.DISPUTE,
            object_id,
            reference,
            payment.request.amount_cents,
            dispute_state=payment.dispute,
        )

    async def checkout_of_payment(self, payment_reference: str) -> str | None:
        sale = _sale_of(payment_reference)
        return f"sandbox_cs_{_sale_suffix(sale)}" if sale else None

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        raise InvalidWebhook("the sandbox sends no webhooks")

    async def aclose(self) -> None:
        return None

    def settle(self, session_id: str, outcome: SandboxOutcome) -> ProviderEvent:
        """Move a sandbox payment on and return the event a real provider would send."""
        payment = self._recall(session_id)
        if payment is None:
            raise LookupError(session_id)
        purchase_id = payment.request.purchase_id
        event_id = f"sandbox_evt_{uuid.uuid4().hex}"
        if outcome in (SandboxOutcome.PAID, SandboxOutcome.FAILED, SandboxOutcome.EXPIRED):
            if payment.state is PaymentState.OPEN:
                payment.state = PaymentState(outcome.value)
            return ProviderEvent(
                event_id, f"sandbox.{outcome.lower()}", EventKind.PAYMENT, session_id, purchase_id
            )
        if payment.state is not PaymentState.PAID:
            raise LookupError(purchase_id)
        if outcome is SandboxOutcome.REFUNDED:
            refund_id = f"sandbox_re_dash_{purchase_id}"
            payment.refunds.setdefault(refund_id, payment.request.amount_cents)
            return ProviderEvent(event_id, "sandbox.refunded", EventKind.REFUNDS, payment.reference)
        payment.dispute = {
            SandboxOutcome.DISPUTED: DisputeState.OPEN,
            SandboxOutcome.DISPUTE_WON: DisputeState.WON,
            SandboxOutcome.DISPUTE_LOST: DisputeState.LOST,
        }[outcome]
        return ProviderEvent(
            event_id,
            "sandbox.dispute",
            EventKind.DISPUTE,
            payment.reference.replace("sandbox_pay_", "sandbox_dp_", 1),
        )

    def _payment(self, session_id: str, payment: _SandboxPayment) -> Payment:
        paid = payment.state is PaymentState.PAID
        return Payment(
            session_id,
            payment.state,
            payment.request.purchase_id,
            payment.request.amount_cents,
            payment.request.currency,
            payment.reference if paid else None,
        )

    def _by_reference(self, payment_reference: str) -> _SandboxPayment:
        session = payment_reference.replace("sandbox_pay_", "sandbox_cs_", 1)
        payment = self._recall(session)
        if payment is None or payment.reference != payment_reference:
            raise LookupError(payment_reference)
        return payment
