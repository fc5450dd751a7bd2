"""A small reference model of one account's credits, re-stated from the README's rules.

It imports nothing from ``app``: the model-based test checks the app against this second,
independent statement of the rules. Time only moves through :meth:`CreditModel.advance`,
which applies every monthly renewal at once. The app records renewals lazily (a read
projects them; the next write under the account lock writes them down), so the model keeps
the ledger in *chunks*, one per write that must have reached the database, and holds the
renewal entries no write has recorded yet in ``pending``.

Support's adjustments: a positive one is a bonus lot, spent after the subscription's credits
and before packs, expiring at its own date (the next renewal when none is given; starting a
plan does not touch it); a negative one takes credits back in that same order, all or nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

# Small allowances (the app's are settings) so a few runs exhaust a cycle and spill into packs.
MONTHLY_CREDITS = {"STARTER": 50, "PRO": 150}
TARIFFS = {"TURBO": 20, "PRO": 38, "ULTRA": 80, "STYLE_TRANSFER": 15, "BACKGROUND_REMOVAL": 1}
PACKS = {"pack-500": 500, "pack-1500": 1500, "pack-4000": 4000}
PRICES = {"pack-500": 1000, "pack-1500": 2500, "pack-4000": 6000}
GENERATION_TIMEOUT = timedelta(minutes=15)
# Generations QUEUED or RUNNING at once, by plan.
MAX_ACTIVE = {"STARTER": 2, "PRO": 5}
BONUS_NUMBERS = 1001


def renewal(anchor: datetime, k: int) -> datetime:
    """Cycle k starts k calendar months after the anchor, counted from the anchor itself."""
    return anchor + relativedelta(months=k)


def cycle_containing(anchor: datetime, moment: datetime) -> int:
    k = 0
    while renewal(anchor, k + 1) <= moment:
        k += 1
    return k


@dataclass
class Subscription:
    number: int
    plan: str
    interval: str
    started_at: datetime
    canceled_at: datetime | None = None
    # A downgrade waiting for the renewal at scheduled_from.
    scheduled: str | None = None
    scheduled_from: datetime | None = None

    @property
    def monthly(self) -> int:
        return MONTHLY_CREDITS[self.plan]

    def ends_at(self) -> datetime | None:
        """A cancelled plan runs to the end of the cycle it was cancelled in."""
        if self.canceled_at is None:
            return None
        return renewal(self.started_at, cycle_containing(self.started_at, self.canceled_at) + 1)

    def status(self, now: datetime) -> str:
        ends = self.ends_at()
        if ends is None:
            return "ACTIVE"
        return "CANCELED" if now < ends else "EXPIRED"


@dataclass
class Lot:
    """One bought pack and the part of it not yet spent or expired."""

    number: int
    credits: int
    purchased_at: datetime
    expires_at: datetime
    remaining: int
    id: str = ""
    expired: bool = False


@dataclass
class Purchase:
    """A pack bought: paid for first (a sandbox payment the test settles), then credited.

    The sandbox refunds and disputes a payment in full, so a reversal stands for every credit
    of the pack, less what an earlier reversal already stood for.
    """

    number: int
    pack_id: str
    credits: int
    status: str = "PENDING"
    payment: str = "OPEN"  # the sandbox's state: OPEN, PAID, FAILED or EXPIRED
    lot: Lot | None = None
    refunded: bool = False  # refunded in full (by us, as undeliverable, or at the provider)
    refunded_at_provider: bool = False
    dispute: str | None = None  # OPEN, WON or LOST
    dispute_target: int = 0
    dispute_taken: int = 0
    target: int = 0
    revoked: int = 0
    id: str = ""


@dataclass
class Hold:
    bucket: str
    amount: int
    lot: Lot | None
    # (subscription number, cycle index) the subscription credits were taken from.
    cycle: tuple[int, int] | None
    status: str = "OPEN"


@dataclass
class Adjustment:
    """Support's adjustment; a positive one has its bonus lot."""

    amount: int
    reason: str
    expires_at: datetime | None
    lot: Lot | None = None
    id: str = ""


@dataclass
class Generation:
    number: int
    tool: str
    prompt: str | None
    cost: int
    created_at: datetime
    holds: list[Hold]
    status: str = "QUEUED"
    started_at: datetime | None = None
    id: str = ""


@dataclass(frozen=True)
class Entry:
    kind: str
    bucket: str
    amount: int
    lot: int | None  # Lot.number
    generation: int | None  # Generation.number
    occurred_at: datetime


@dataclass(frozen=True)
class Refused:
    """An expected refusal: nothing changed. ``why`` names it as the API does."""

    why: str
    required: int = 0
    available: int = 0


@dataclass
class CreditModel:
    now: datetime
    subscription: Subscription | None = None
    subscription_balance: int = 0
    cycle: tuple[int, int] | None = None
    cycle_ends_at: datetime | None = None
    lots: list[Lot] = field(default_factory=list)
    # Bonus lots, numbered from BONUS_NUMBERS on (pack lots count from 1).
    bonus: list[Lot] = field(default_factory=list)
    purchases: list[Purchase] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    # idempotency key -> (operation, arguments, the first result)
    keys: dict[str, tuple[str, tuple[object, ...], Purchase | Generation | Adjustment]] = field(
        default_factory=dict
    )
    chunks: list[list[Entry]] = field(default_factory=list)
    pending: list[Entry] = field(default_factory=list)
    pending_renewals: int = 0
    subscriptions_started: int = 0

    # what a client reads -------------------------------------------------------------------

    @property
    def pack_balance(self) -> int:
        return sum(lot.remaining for lot in self.lots)

    @property
    def bonus_balance(self) -> int:
        return sum(lot.remaining for lot in self.bonus)

    @property
    def credits_total(self) -> int:
        return self.subscription_balance + self.bonus_balance + self.pack_balance

    def bonus_expires_at(self) -> datetime | None:
        live = [lot.expires_at for lot in self.bonus if lot.remaining]
        return min(live) if live else None

    def pack_expires_at(self) -> datetime | None:
        live = [lot.expires_at for lot in self.lots if lot.remaining]
        return min(live) if live else None

    def next_renewal_at(self) -> datetime | None:
        active = self.subscription and self.subscription.status(self.now) == "ACTIVE"
        return self.cycle_ends_at if active else None

    # time ----------------------------------------------------------------------------------

    def advance(self, to: datetime) -> None:
        """Move the clock; each renewal due expires the cycle's credits and grants the next."""
        assert to >= self.now
        self.now = to
        while self.cycle_ends_at is not None and self.cycle_ends_at <= to:
            at = self.cycle_ends_at
            # Bonus lots that ended by then go first, in the order they ended.
            self._expire_bonus(at)
            entries = self._expire_subscription_credits(at)
            entries += self._expire_lots(at, functools.partial(_expires_by, at=at))
            sub = self.subscription
            ends = sub.ends_at() if sub else None
            if sub is not None and self.cycle is not None and (ends is None or at < ends):
                if sub.scheduled and sub.scheduled_from and at >= sub.scheduled_from:
                    sub.plan, sub.scheduled, sub.scheduled_from = sub.scheduled, None, None
                k = self.cycle[1] + 1
                self.cycle = (sub.number, k)
                self.cycle_ends_at = renewal(sub.started_at, k + 1)
                self.subscription_balance = sub.monthly
                entries.append(Entry("GRANT", "SUBSCRIPTION", sub.monthly, None, None, at))
            else:
                self.cycle = self.cycle_ends_at = None
            self.pending += entries
            self.pending_renewals += 1
        self._expire_bonus(to)

    def _expire_bonus(self, until: datetime) -> None:
        """Each bonus lot expires at its own date; one with credits left needs recording."""
        due = [lot for lot in self.bonus if not lot.expired and lot.expires_at <= until]
        for lot in sorted(due, key=lambda lot: (lot.expires_at, lot.purchased_at, lot.id)):
            lot.expired = True
            if lot.remaining:
                self.pending.append(
                    Entry("EXPIRY", "BONUS", -lot.remaining, lot.number, None, lot.expires_at)
                )
                lot.remaining = 0
                self.pending_renewals += 1

    def _expire_subscription_credits(self, at: datetime) -> list[Entry]:
        amount, self.subscription_balance = self.subscription_balance, 0
        return [Entry("EXPIRY", "SUBSCRIPTION", -amount, None, None, at)] if amount else []

    def _expire_lots(self, at: datetime, due: Callable[[Lot], bool]) -> list[Entry]:
        entries = []
        for lot in self.lots:
            if not lot.expired and due(lot):
                lot.expired = True
                if lot.remaining:
                    entries.append(Entry("EXPIRY", "PACK", -lot.remaining, lot.number, None, at))
                    lot.remaining = 0
        return entries

    def record_due_renewals(self) -> None:
        """A write that only records the renewals due (the first page of the ledger)."""
        self._record([])

    def _record(self, entries: list[Entry]) -> None:
        """A write committed: it wrote down the due renewals first, then its own entries."""
        chunk = self.pending + entries
        if chunk:
            self.chunks.append(chunk)
        self.pending = []
        self.pending_renewals = 0

    # subscriptions -------------------------------------------------------------------------

    def start(self, plan: str, interval: str, started_at: datetime) -> Refused | None:
        previous = self.subscription
        if started_at > self.now:
            return Refused("BAD_USER_INPUT")
        if previous is not None:
            if previous.status(self.now) == "ACTIVE":
                return Refused("CONFLICT")
            if previous.canceled_at is not None and started_at < previous.canceled_at:
                return Refused("BAD_USER_INPUT")
        self.subscriptions_started += 1
        sub = Subscription(self.subscriptions_started, plan, interval, started_at)
        # Starting a plan is a renewal: whatever the previous one left expires, and a pack
        # not yet past its date expires now (its date moves to now).
        entries = self._expire_subscription_credits(self.now)
        entries += self._expire_lots(self.now, lambda lot: True)
        for lot in self.lots:
            lot.expires_at = min(lot.expires_at, self.now)
        k = cycle_containing(started_at, self.now)
        self.subscription = sub
        self.cycle = (sub.number, k)
        self.cycle_ends_at = renewal(started_at, k + 1)
        self.subscription_balance = sub.monthly
        entries.append(Entry("GRANT", "SUBSCRIPTION", sub.monthly, None, None, self.now))
        self._record(entries)
        return None

    def change(self, plan: str, interval: str) -> Refused | None:
        """An upgrade now (the difference granted), a downgrade at the next renewal."""
        sub = self.subscription
        if sub is None or sub.status(self.now) != "ACTIVE" or self.cycle_ends_at is None:
            return Refused("CONFLICT")
        if plan == (sub.scheduled or sub.plan) and interval == sub.interval:
            return None  # nothing to change: nothing is written
        sub.interval = interval
        entries = []
        if plan == sub.plan:
            sub.scheduled = sub.scheduled_from = None
        elif MONTHLY_CREDITS[plan] >= sub.monthly:
            grant = MONTHLY_CREDITS[plan] - sub.monthly
            sub.plan, sub.scheduled, sub.scheduled_from = plan, None, None
            self.subscription_balance += grant
            if grant:
                entries.append(Entry("GRANT", "SUBSCRIPTION", grant, None, None, self.now))
        else:
            sub.scheduled, sub.scheduled_from = plan, self.cycle_ends_at
        self._record(entries)
        return None

    def cancel(self) -> Refused | None:
        sub = self.subscription
        if sub is None or sub.status(self.now) != "ACTIVE":
            return Refused("CONFLICT")
        sub.canceled_at = self.now
        self._record([])
        return None

    # idempotent client mutations -----------------------------------------------------------

    def _replay(self, key: str, operation: str, arguments: tuple[object, ...]) -> object:
        operation_then, arguments_then, result = self.keys[key]
        if (operation_then, arguments_then) != (operation, arguments):
            return Refused("IdempotencyConflict")
        return result

    def purchase(self, pack_id: str, key: str) -> Purchase | Refused:
        """A new PENDING purchase (its ``id`` is learned from the app), the first, or a refusal.

        Nothing is credited until the payment is settled (:meth:`settle`).
        """
        if key in self.keys:
            return self._replay(key, "purchasePack", (pack_id,))  # type: ignore[return-value]
        if pack_id not in PACKS:
            return Refused("PackNotFound")
        if not self._deliverable():
            return Refused("SubscriptionRequired")
        purchase = Purchase(len(self.purchases) + 1, pack_id, PACKS[pack_id])
        self.purchases.append(purchase)
        self.keys[key] = ("purchasePack", (pack_id,), purchase)
        self._record([])
        return purchase

    def _deliverable(self) -> bool:
        sub = self.subscription
        return sub is not None and sub.status(self.now) == "ACTIVE" and bool(self.cycle_ends_at)

    def settle(self, purchase: Purchase, outcome: str) -> Purchase | Refused:
        """The sandbox reports ``outcome`` for the purchase's payment, as a provider would."""
        if outcome in ("PAID", "FAILED", "EXPIRED"):
            if purchase.payment == "OPEN":
                purchase.payment = outcome
            if purchase.status == "PENDING":
                self._settle_payment(purchase)
            return purchase
        if purchase.payment != "PAID":
            return Refused("PurchaseNotFound")  # nothing to reverse
        if outcome == "REFUNDED":
            if not purchase.refunded_at_provider:
                purchase.refunded_at_provider = True
                self._refund(purchase)
            return purchase
        self._dispute(purchase, {"DISPUTED": "OPEN", "DISPUTE_WON": "WON"}.get(outcome, "LOST"))
        return purchase

    def _settle_payment(self, purchase: Purchase) -> None:
        if purchase.payment in ("FAILED", "EXPIRED"):
            purchase.status = purchase.payment
            self._record([])
        elif not self._deliverable():
            # Paid but not deliverable: refunded, nothing credited.
            purchase.status, purchase.refunded = "REFUNDED", True
            self._record([])
        else:
            assert self.cycle_ends_at is not None
            lot = Lot(len(self.lots) + 1, purchase.credits, self.now, self.cycle_ends_at, 0)
            lot.id = purchase.id
            lot.remaining = purchase.credits
            self.lots.append(lot)
            purchase.lot, purchase.status = lot, "FULFILLED"
            self._record([Entry("GRANT", "PACK", purchase.credits, lot.number, None, self.now)])

    def _revoke(self, purchase: Purchase) -> tuple[int, int, list[Entry]]:
        """A reversal of the whole payment: its credits less what was already reversed."""
        assert purchase.lot is not None
        target = purchase.credits - purchase.target
        take = min(target, purchase.lot.remaining)
        purchase.lot.remaining -= take
        purchase.target += target
        purchase.revoked += take
        entries = []
        if take:
            entries.append(Entry("REVOCATION", "PACK", -take, purchase.lot.number, None, self.now))
        return target, take, entries

    def _refund(self, purchase: Purchase) -> None:
        entries: list[Entry] = []
        if purchase.lot is not None:
            entries = self._revoke(purchase)[2]
            if purchase.status in ("FULFILLED", "DISPUTED"):
                purchase.status = "REFUNDED"
        purchase.refunded = True
        self._record(entries)

    def _dispute(self, purchase: Purchase, state: str) -> None:
        if purchase.dispute not in (None, "OPEN") or (purchase.dispute, state) == ("OPEN", "OPEN"):
            return  # closed already, or opened again: the same dispute, applied once
        if purchase.lot is None:
            return  # never credited: nothing to take or give back
        entries: list[Entry] = []
        if purchase.dispute is None:
            if state == "WON":
                return
            purchase.dispute_target, purchase.dispute_taken, entries = self._revoke(purchase)
            purchase.dispute, purchase.status = "OPEN", "DISPUTED"
        if state != "OPEN":
            purchase.dispute = state
            if state == "LOST":
                purchase.status = "REVOKED"
            elif purchase.refunded:
                purchase.status = "REFUNDED"
            else:
                lot, amount = purchase.lot, purchase.dispute_taken
                purchase.target -= purchase.dispute_target
                purchase.revoked -= amount
                if amount:
                    entries.append(Entry("GRANT", "PACK", amount, lot.number, None, self.now))
                    if lot.expired:
                        entries.append(Entry("EXPIRY", "PACK", -amount, lot.number, None, self.now))
                    else:
                        lot.remaining += amount
                purchase.status = "FULFILLED"
        self._record(entries)

    def run(self, tool: str, prompt: str | None, key: str) -> Generation | Refused:
        if key in self.keys:
            return self._replay(key, "runGenerator", (tool, prompt))  # type: ignore[return-value]
        active = sum(1 for g in self.generations if g.status in ("QUEUED", "RUNNING"))
        if self.subscription is not None and active >= MAX_ACTIVE[self.subscription.plan]:
            return Refused("TooManyActiveGenerations")
        cost = TARIFFS[tool]
        if self.credits_total < cost:
            return Refused("InsufficientCredits", required=cost, available=self.credits_total)
        number = len(self.generations) + 1
        holds = []
        entries = []
        for bucket, lot, take in self._take(cost):
            holds.append(Hold(bucket, take, lot, self.cycle if lot is None else None))
            entries.append(
                Entry("SPEND", bucket, -take, lot.number if lot else None, number, self.now)
            )
        generation = Generation(number, tool, prompt, cost, self.now, holds)
        self.generations.append(generation)
        self.keys[key] = ("runGenerator", (tool, prompt), generation)
        self._record(entries)
        return generation

    def _take(self, amount: int) -> list[tuple[str, Lot | None, int]]:
        """Take ``amount`` in spend order: subscription credits, then bonus lots, then packs,
        lots by earliest expiry, then oldest (same instant: by id, as the app does)."""
        parts: list[tuple[str, Lot | None, int]] = []
        left = amount
        take = min(left, self.subscription_balance)
        if take:
            self.subscription_balance -= take
            left -= take
            parts.append(("SUBSCRIPTION", None, take))
        for bucket, lots in (("BONUS", self.bonus), ("PACK", self.lots)):
            for lot in sorted(lots, key=lambda lot: (lot.expires_at, lot.purchased_at, lot.id)):
                take = min(left, lot.remaining)
                if take:
                    lot.remaining -= take
                    left -= take
                    parts.append((bucket, lot, take))
        assert left == 0
        return parts

    def adjust(
        self, amount: int, reason: str, expires_at: datetime | None, key: str
    ) -> Adjustment | Refused:
        """Support grants a bonus lot (amount > 0) or takes credits back (amount < 0)."""
        arguments = (amount, reason, expires_at)
        if key in self.keys:
            return self._replay(key, "adjustCredits", arguments)  # type: ignore[return-value]
        adjustment = Adjustment(amount, reason, expires_at)
        if amount > 0:
            if expires_at is not None and expires_at <= self.now:
                return Refused("BAD_USER_INPUT")
            ends = expires_at or self.cycle_ends_at
            if ends is None:
                return Refused("BAD_USER_INPUT")  # no date, and no renewal to expire with
            lot = Lot(BONUS_NUMBERS + len(self.bonus), amount, self.now, ends, amount)
            self.bonus.append(lot)
            adjustment.lot, adjustment.expires_at = lot, ends
            entries = [Entry("ADJUSTMENT", "BONUS", amount, lot.number, None, self.now)]
        else:
            if expires_at is not None:
                return Refused("BAD_USER_INPUT")
            if self.credits_total < -amount:
                return Refused(
                    "InsufficientCredits", required=-amount, available=self.credits_total
                )
            entries = [
                Entry("ADJUSTMENT", bucket, -take, lot.number if lot else None, None, self.now)
                for bucket, lot, take in self._take(-amount)
            ]
        self.keys[key] = ("adjustCredits", arguments, adjustment)
        self._record(entries)
        return adjustment

    # the worker's side ---------------------------------------------------------------------

    def claim(self, limit: int, tools: list[str] | None) -> list[Generation]:
        """The oldest queued jobs (same instant: by id); claiming moves no credits."""
        queued = [
            g
            for g in self.generations
            if g.status == "QUEUED" and (tools is None or g.tool in tools)
        ]
        claimed = sorted(queued, key=lambda g: (g.created_at, g.id))[:limit]
        for generation in claimed:
            generation.status, generation.started_at = "RUNNING", self.now
        return claimed

    def complete(self, generation: Generation) -> Refused | None:
        if generation.status != "RUNNING":
            return Refused(generation.status)
        for hold in generation.holds:
            hold.status = "SETTLED"
        generation.status = "SUCCEEDED"
        self._record([])
        return None

    def fail(self, generation: Generation) -> Refused | None:
        """A worker's failure, or a dispatcher refusing a job before it started."""
        if generation.status not in ("QUEUED", "RUNNING"):
            return Refused(generation.status)
        self._record(self._release(generation))
        return None

    def cancel_run(self, generation: Generation) -> Refused | None:
        """Its owner takes back a job no worker claimed; the credits go back as for a fail."""
        if generation.status != "QUEUED":
            return Refused(generation.status)
        self._record(self._release(generation, "CANCELED"))
        return None

    def _release(self, generation: Generation, status: str = "FAILED") -> list[Entry]:
        """Each held part goes back to its bucket if that still lives, else expires at once."""
        entries = []
        for hold in generation.holds:
            lot_number = hold.lot.number if hold.lot else None
            entries.append(
                Entry("REFUND", hold.bucket, hold.amount, lot_number, generation.number, self.now)
            )
            if hold.lot is None:
                alive = hold.cycle is not None and hold.cycle == self.cycle
                if alive:
                    self.subscription_balance += hold.amount
            else:
                alive = not hold.lot.expired
                if alive:
                    hold.lot.remaining += hold.amount
            if not alive:
                entries.append(
                    Entry(
                        "EXPIRY", hold.bucket, -hold.amount, lot_number, generation.number, self.now
                    )
                )
            hold.status = "RELEASED"
        generation.status = status
        return entries

    def stale_generations(self) -> list[Generation]:
        return [
            g
            for g in self.generations
            if (g.status == "QUEUED" and self.now - g.created_at >= GENERATION_TIMEOUT)
            or (
                g.status == "RUNNING"
                and g.started_at is not None
                and self.now - g.started_at >= GENERATION_TIMEOUT
            )
        ]

    def sweep(self) -> tuple[int, int]:
        """Record due renewals; fail every job queued or running for the timeout or longer."""
        renewed = 1 if self.pending_renewals else 0
        stale = self.stale_generations()
        entries = []
        for generation in sorted(stale, key=lambda g: g.created_at):
            entries += self._release(generation)
        self._record(entries)
        return renewed, len(stale)


def _expires_by(lot: Lot, at: datetime) -> bool:
    return lot.expires_at <= at
