"""Outgoing webhooks: which events a write raises, when a failed delivery is retried, and
which endpoint addresses may be called. Pure rules; the outbox and the sender are elsewhere.

An event is decided from one write's ledger postings, in order, and the balances before
them: ``credits.low`` when the running total crosses from at or above the plan's threshold
to below it (once per crossing, however many spends follow), ``credits.depleted`` when it
crosses below the cheapest tariff, and one event per renewal grant, pack grant and pack
expiry. Facts a posting cannot tell (a generation ended, a purchase was reversed) come in
as :class:`Fact` values.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from app.domain.model import Bucket, LedgerKind, Plan, ReferenceType


class EventType(enum.StrEnum):
    CREDITS_LOW = "credits.low"
    CREDITS_DEPLETED = "credits.depleted"
    CREDITS_RENEWED = "credits.renewed"
    PACK_PURCHASED = "pack.purchased"
    PACK_EXPIRED = "pack.expired"
    PURCHASE_REFUNDED = "purchase.refunded"
    PURCHASE_REVOKED = "purchase.revoked"
    GENERATION_SUCCEEDED = "generation.succeeded"
    GENERATION_FAILED = "generation.failed"


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


# The share of a plan's monthly allowance below which credits are "low", unless the plan
# names its own threshold.
DEFAULT_LOW_PERCENT = 10


@dataclass(frozen=True, slots=True)
class BalanceAlerts:
    """Where an account's total counts as low, and as depleted (None: not watched)."""

    low_below: int | None
    depleted_below: int | None


def low_threshold(
    plan: Plan | None, monthly_credits: int | None, thresholds: Mapping[Plan, int]
) -> int | None:
    """The plan's own threshold, else 10% of the account's monthly allowance; no plan: none."""
    if plan is None or monthly_credits is None:
        return None
    if plan in thresholds:
        return thresholds[plan]
    return monthly_credits * DEFAULT_LOW_PERCENT // 100


@dataclass(frozen=True, slots=True)
class Entry:
    """One posting of the write, as events name it (``position``: its place in the write)."""

    position: int
    kind: LedgerKind
    bucket: Bucket
    amount: int
    balance_after: int
    reference_type: str
    reference_id: str | None
    lot_id: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class GenerationEnded:
    generation_id: str
    tool: str
    cost: int
    succeeded: bool
    detail: str | None


@dataclass(frozen=True, slots=True)
class PurchaseReversed:
    purchase_id: str
    # "refund", "dispute_opened", "dispute_lost"
    reason: str
    amount_cents: int
    currency: str
    credits_revoked: int


Fact = GenerationEnded | PurchaseReversed


@dataclass(frozen=True, slots=True)
class Balances:
    subscription: int
    pack: int
    bonus: int = 0

    @property
    def total(self) -> int:
        return self.subscription + self.pack + self.bonus


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One event for the outbox: what happened to which account, the balances after the
    write, why, and the positions of the write's ledger entries it involves."""

    type: EventType
    account_id: str
    occurred_at: datetime
    reason: str
    balances: Balances
    entries: tuple[int, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


REASONS = {
    LedgerKind.SPEND: "spend",
    LedgerKind.EXPIRY: "expiry",
    LedgerKind.REVOCATION: "revocation",
    LedgerKind.REFUND: "refund",
    LedgerKind.GRANT: "grant",
    LedgerKind.ADJUSTMENT: "adjustment",
}


def steps(entries: Sequence[Entry]) -> list[list[Entry]]:
    """The write's entries as the account lived them: consecutive entries of one instant are
    one step (a renewal's expiries and its grant; a spend taken from two buckets; a refund
    that expires at once), so a total that dips only inside a step never "crossed"."""
    grouped: list[list[Entry]] = []
    for entry in entries:
        if grouped and grouped[-1][-1].occurred_at == entry.occurred_at:
            grouped[-1].append(entry)
        else:
            grouped.append([entry])
    return grouped


def crossings(before: int, amounts: Sequence[int], threshold: int | None) -> list[int]:
    """Indexes of the amounts after which the running total went from >= threshold to below."""
    if threshold is None or threshold <= 0:
        return []
    found = []
    total = before
    for index, amount in enumerate(amounts):
        after = total + amount
        if total >= threshold > after:
            found.append(index)
        total = after
    return found


def decide_events(
    account_id: str,
    before: Balances,
    entries: Sequence[Entry],
    alerts: BalanceAlerts,
    facts: Sequence[Fact],
    now: datetime,
) -> list[OutgoingEvent]:
    """The events one committed write raises, in the order they happened."""
    after = Balances(
        before.subscription + sum(e.amount for e in entries if e.bucket is Bucket.SUBSCRIPTION),
        before.pack + sum(e.amount for e in entries if e.bucket is Bucket.PACK),
        before.bonus + sum(e.amount for e in entries if e.bucket is Bucket.BONUS),
    )
    events: list[OutgoingEvent] = []

    def add(kind: EventType, reason: str, chosen: Sequence[Entry], **data: Any) -> None:
        at = chosen[-1].occurred_at if chosen else now
        positions = tuple(e.position for e in chosen)
        events.append(OutgoingEvent(kind, account_id, at, reason, after, positions, data))

    for entry in entries:
        if entry.kind is LedgerKind.GRANT and entry.bucket is Bucket.SUBSCRIPTION:
            if entry.reference_type in (ReferenceType.RENEWAL, ReferenceType.SUBSCRIPTION):
                # The grant and what expired at the same renewal.
                renewal = [
                    e
                    for e in entries
                    if e.occurred_at == entry.occurred_at
                    and (e is entry or e.kind is LedgerKind.EXPIRY)
                    and e.position <= entry.position
                ]
                reason = "renewal" if entry.reference_type == ReferenceType.RENEWAL else "plan"
                add(EventType.CREDITS_RENEWED, reason, renewal, granted=entry.amount)
        elif entry.kind is LedgerKind.GRANT and entry.bucket is Bucket.PACK:
            if entry.reference_type == ReferenceType.PURCHASE:
                add(
                    EventType.PACK_PURCHASED,
                    "payment_settled",
                    [entry],
                    purchaseId=entry.lot_id,
                    credits=entry.amount,
                )
        elif (
            entry.kind is LedgerKind.EXPIRY
            and entry.bucket is Bucket.PACK
            and entry.reference_type == ReferenceType.PURCHASE
            and entry.amount
        ):
            add(
                EventType.PACK_EXPIRED,
                "cycle_ended",
                [entry],
                purchaseId=entry.lot_id,
                creditsLost=-entry.amount,
            )
    moments = steps(entries)
    amounts = [sum(e.amount for e in step) for step in moments]
    for threshold, kind in (
        (alerts.low_below, EventType.CREDITS_LOW),
        (alerts.depleted_below, EventType.CREDITS_DEPLETED),
    ):
        for index in crossings(before.total, amounts, threshold):
            step = moments[index]
            # The reason is what took the credits: the step's first debit.
            debit = next((e for e in step if e.amount < 0), step[-1])
            add(kind, REASONS[debit.kind], step, threshold=threshold)
    for fact in facts:
        if isinstance(fact, GenerationEnded):
            returned = [e for e in entries if e.reference_id == fact.generation_id]
            refunded = sum(e.amount for e in returned if e.kind is LedgerKind.REFUND)
            common = {"generationId": fact.generation_id, "tool": fact.tool, "cost": fact.cost}
            if fact.succeeded:
                add(EventType.GENERATION_SUCCEEDED, "completed", [], **common)
            else:
                add(
                    EventType.GENERATION_FAILED,
                    "failed",
                    returned,
                    refunded=refunded,
                    failureReason=fact.detail,
                    **common,
                )
        else:
            kind = (
                EventType.PURCHASE_REFUNDED
                if fact.reason == "refund"
                else EventType.PURCHASE_REVOKED
            )
            taken = [e for e in entries if e.kind is LedgerKind.REVOCATION]
            add(
                kind,
                fact.reason,
                taken,
                purchaseId=fact.purchase_id,
                amountCents=fact.amount_cents,
                currency=fact.currency,
                creditsRevoked=fact.credits_revoked,
            )
    return events


# -- delivery -----------------------------------------------------------------------------

# After the first attempt fails: the waits before attempts 2..8; then the delivery failed.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
# An endpoint whose deliveries have failed (none succeeding) for this long is disabled.
DISABLE_AFTER = timedelta(days=5)
# How long the previous secret keeps signing after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)


def next_attempt_at(attempts_made: int, failed_at: datetime) -> datetime | None:
    """When to try again after ``attempts_made`` attempts, the last failing; None: give up."""
    if attempts_made < 1:
        raise ValueError("a retry follows an attempt")
    if attempts_made > len(RETRY_DELAYS):
        return None
    return failed_at + RETRY_DELAYS[attempts_made - 1]


def should_disable(failing_since: datetime | None, now: datetime) -> bool:
    return failing_since is not None and now - failing_since >= DISABLE_AFTER


def accepted(status_code: int) -> bool:
    """Standard Webhooks: any 2xx is a successful delivery; anything else is retried."""
    return 200 <= status_code < 300


def signing_secrets(
    current: str, previous: str | None, previous_until: datetime | None, now: datetime
) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and during the overlap
    after a rotation the previous one too (receivers accept either signature)."""
    if previous and previous_until is not None and now < previous_until:
        return [current, previous]
    return [current]


# -- endpoint addresses -------------------------------------------------------------------

MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):
    """Why an endpoint URL is refused (the message is safe to show)."""


def check_url_form(url: str, *, public_only: bool) -> str:
    """The URL's host, if its form is acceptable; with ``public_only`` (production), https
    and not a literal loopback, private or link-local address."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise UnsafeUrl(f"url must be at most {MAX_URL_LENGTH} characters, without spaces.")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("url must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise UnsafeUrl("url must not carry credentials.")
    if public_only:
        if parts.scheme != "https":
            raise UnsafeUrl("url must use https.")
        if parts.hostname.lower() in ("localhost", "localhost.localdomain") or (
            parts.hostname.lower().endswith(".localhost")
        ):
            raise UnsafeUrl("url must not point at this host.")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if literal is not None:
            check_address(str(literal))
    return parts.hostname


def check_address(address: str) -> None:
    """Refuse an address the gateway must never call for a client (SSRF)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        raise UnsafeUrl(f"url resolves to {ip}, which is not a public address.")
