"""One account's credits as an aggregate: its state in, a write plan out, no I/O.

A use case loads :class:`AccountState` under the account's lock and calls one function here
(:func:`plan_run`, :func:`plan_finish`, :func:`plan_settlement`, :func:`plan_renewals`,
:func:`plan_adjustment`). The
function decides everything that changes: the acting instant (after the lock, never before
what the account recorded), the renewals that fell due, the spend order, holds, refunds and
expiries, the new balances and cycle, and the events; persistence only writes the
:class:`WritePlan` it returns. Every balance change is an explicit :class:`Posting`.

The rules themselves are not restated: cycles and renewals are ``wallet``'s, the spend
order ``spending``'s, which held credits come back ``holds``'s; this module applies them to
one account's books.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from app.domain.adjustments import bonus_expiry, check_total_after
from app.domain.errors import InvalidInput
from app.domain.events import AccountChanged, CreditsPosted, DomainEvent, GenerationUpdated
from app.domain.generations import ENDS_IN, Finish, check_can_finish, check_room_for_another
from app.domain.holds import HeldPortion, RecordedCycle, release
from app.domain.idempotency import check_retry
from app.domain.model import (
    Bucket,
    GenerationStatus,
    HoldStatus,
    LedgerKind,
    Plan,
    ReferenceType,
    Tool,
)
from app.domain.purchases import (
    PurchaseStatus,
    ReportedPayment,
    Sale,
    Settlement,
    SettlementDecision,
    settle,
)
from app.domain.records import Generation
from app.domain.spending import PackLot, allocate, lot_order
from app.domain.subscriptions import ScheduledChange, SubscriptionTerms
from app.domain.wallet import Renewal, Wallet, acting_instant, renewals_due
from app.domain.webhooks import (
    BalanceAlerts,
    Balances,
    Entry,
    Fact,
    GenerationEnded,
    OutgoingEvent,
    decide_events,
)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    operation: str
    fingerprint: str
    result_id: str


@dataclass(frozen=True, slots=True)
class OpenHold:
    """Credits a running generation holds from one bucket."""

    id: int
    bucket: Bucket
    amount: int
    subscription_id: str | None = None
    cycle_index: int | None = None
    lot_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the rules need of one account, read after its row was locked.

    ``lots``: at least every lot with credits left, in spend order, and every lot an open
    hold came from (their expiry decides whether held credits come back). ``bonus_lots``:
    the same for the bonus lots of support's adjustments.
    """

    account_id: str
    subscription_id: str | None
    wallet: Wallet
    terms: SubscriptionTerms | None
    lots: tuple[PackLot, ...] = ()
    idempotency: IdempotencyRecord | None = None
    # Its generations QUEUED or RUNNING (a plan caps how many run at once).
    active_generations: int = 0
    bonus_lots: tuple[PackLot, ...] = ()


@dataclass(frozen=True, slots=True)
class Posting:
    """One immutable ledger entry: a signed change of one bucket and the balance after."""

    kind: LedgerKind
    bucket: Bucket
    amount: int
    balance_after: int
    reference_type: ReferenceType
    reference_id: str | None
    lot_id: str | None
    occurred_at: datetime
    tool: Tool | None = None
    # An adjustment's: why support made it, and who (the service token's subject).
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class LotChange:
    lot_id: str
    remaining: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewHold:
    bucket: Bucket
    amount: int
    lot_id: str | None
    subscription_id: str | None
    cycle_index: int | None


@dataclass(frozen=True, slots=True)
class NewGeneration:
    id: str
    tool: Tool
    cost: int
    prompt: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GenerationChange:
    id: str
    status: GenerationStatus
    finished_at: datetime
    result_url: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class NewAdjustment:
    """Support's adjustment; a positive one is also the bonus lot its credits live in."""

    id: str
    amount: int
    reason: str
    actor: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class PurchaseChange:
    """A pending purchase settled: its status moves from PENDING, once.

    ``session_id`` is noted only if the purchase named no checkout yet; a granted
    purchase is also a lot, whose credits and expiry are the plan's change of that lot.
    """

    id: str
    status: PurchaseStatus
    reason: str | None
    session_id: str | None
    payment_reference: str | None


@dataclass(frozen=True, slots=True)
class WritePlan:
    """Everything one write changes, for persistence to write as it is."""

    account_id: str
    now: datetime
    wallet: Wallet
    postings: tuple[Posting, ...] = ()
    lots: tuple[LotChange, ...] = ()
    new_generation: NewGeneration | None = None
    generation_change: GenerationChange | None = None
    new_holds: tuple[NewHold, ...] = ()
    hold_changes: tuple[tuple[int, HoldStatus], ...] = ()
    idempotency: IdempotencyRecord | None = None
    events: tuple[DomainEvent, ...] = ()
    # A retry: the first result under the idempotency key; nothing else is written.
    replay_of: str | None = None
    # The subscription becomes this scheduled plan (its renewal was recorded here).
    subscription_id: str | None = None
    plan_change: ScheduledChange | None = None
    # What the postings cannot tell the outgoing webhooks (a generation ended).
    facts: tuple[Fact, ...] = ()
    new_adjustment: NewAdjustment | None = None
    bonus_lots: tuple[LotChange, ...] = ()
    purchase_change: PurchaseChange | None = None

    def granted_lot(self) -> LotChange | None:
        """The lot the settled purchase became (None: no grant here)."""
        change = self.purchase_change
        if change is None:
            return None
        return next((lot for lot in self.lots if lot.lot_id == change.id), None)


@dataclass(slots=True)
class _Lot:
    remaining: int
    expires_at: datetime
    purchased_at: datetime
    changed: bool = False
    bucket: Bucket = Bucket.PACK


@dataclass(slots=True)
class Book:
    """An account's books while one write is decided: balances, lots, what was posted."""

    state: AccountState
    now: datetime
    subscription_balance: int = 0
    pack_balance: int = 0
    cycle_index: int | None = None
    cycle_ends_at: datetime | None = None
    bonus_balance: int = 0
    postings: list[Posting] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)
    # The instant of the last renewal recorded by this write (a scheduled plan may be due).
    renewed_at: datetime | None = None
    _lots: dict[str, _Lot] = field(default_factory=dict)

    @classmethod
    def open(cls, state: AccountState, now: datetime) -> Book:
        wallet = state.wallet
        book = cls(
            state,
            now,
            wallet.subscription_balance,
            wallet.pack_balance,
            wallet.cycle_index,
            wallet.cycle_ends_at,
            wallet.bonus_balance,
        )
        for lot in state.lots:
            book._lots[lot.id] = _Lot(lot.remaining, lot.expires_at, lot.purchased_at)
        for lot in state.bonus_lots:
            book._lots[lot.id] = _Lot(
                lot.remaining, lot.expires_at, lot.purchased_at, bucket=Bucket.BONUS
            )
        # Whoever writes an account may change it; subscribers hear of it only on commit.
        book.events.append(AccountChanged(state.account_id))
        return book

    @property
    def wallet(self) -> Wallet:
        return Wallet(
            self.subscription_balance,
            self.pack_balance,
            self.cycle_index,
            self.cycle_ends_at,
            self.bonus_balance,
        )

    @property
    def recorded_cycle(self) -> RecordedCycle:
        """The cycle as recorded now: what refunds and expiries are judged by."""
        return RecordedCycle(self.state.subscription_id, self.cycle_index, self.cycle_ends_at)

    def live_lots(self, bucket: Bucket = Bucket.PACK) -> list[PackLot]:
        """The lots of ``bucket`` (packs, or bonus lots) with credits left."""
        return [
            PackLot(lot_id, lot.remaining, lot.expires_at, lot.purchased_at)
            for lot_id, lot in self._lots.items()
            if lot.remaining > 0 and lot.bucket is bucket
        ]

    def lot_expires_at(self, lot_id: str) -> datetime | None:
        lot = self._lots.get(lot_id)
        return lot.expires_at if lot else None

    def add_lot(
        self,
        lot_id: str,
        expires_at: datetime,
        purchased_at: datetime,
        bucket: Bucket = Bucket.PACK,
    ) -> None:
        """A lot that holds nothing yet (a pack or a bonus about to be granted)."""
        self._lots[lot_id] = _Lot(0, expires_at, purchased_at, changed=True, bucket=bucket)

    def post(
        self,
        kind: LedgerKind,
        bucket: Bucket,
        amount: int,
        reference_type: ReferenceType,
        reference_id: str | None,
        *,
        lot_id: str | None = None,
        occurred_at: datetime | None = None,
        tool: Tool | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Apply a signed amount to one bucket (and lot); no bucket goes below zero."""
        if bucket is Bucket.SUBSCRIPTION:
            self.subscription_balance += amount
            after = self.subscription_balance
        else:
            lot = self._lots.get(lot_id or "")
            if lot is None or lot.bucket is not bucket:
                raise ValueError("a pack or bonus posting names a known lot of its bucket")
            lot.remaining += amount
            lot.changed = True
            if bucket is Bucket.PACK:
                self.pack_balance += amount
                after = self.pack_balance
            else:
                self.bonus_balance += amount
                after = self.bonus_balance
            if lot.remaining < 0:
                raise ValueError("a lot cannot go below zero")
        if after < 0:
            raise ValueError("a bucket cannot go below zero")
        self.postings.append(
            Posting(
                kind,
                bucket,
                amount,
                after,
                reference_type,
                reference_id,
                lot_id if bucket is not Bucket.SUBSCRIPTION else None,
                occurred_at or self.now,
                tool,
                reason,
                actor,
            )
        )
        self.events.append(CreditsPosted(kind, bucket, amount, tool))

    def bring_up_to_date(self) -> None:
        """Record every renewal and bonus expiry that fell due since the account was last
        written, in the order they happened."""
        renewals, wallet = renewals_due(self.wallet, self.state.terms, self.now)
        for renewal in renewals:
            self.expire_bonus(renewal.at)
            self.record_renewal(renewal, ReferenceType.RENEWAL, self.state.subscription_id)
            self.renewed_at = renewal.at
        self.cycle_index, self.cycle_ends_at = wallet.cycle_index, wallet.cycle_ends_at
        self.expire_bonus(self.now)

    def expire_bonus(self, until: datetime) -> None:
        """Bonus lots whose date is ``until`` or earlier expire, each at its own date."""
        for lot in sorted(self.live_lots(Bucket.BONUS), key=lot_order):
            if lot.expires_at <= until:
                self.post(
                    LedgerKind.EXPIRY,
                    Bucket.BONUS,
                    -lot.remaining,
                    ReferenceType.ADJUSTMENT,
                    lot.id,
                    lot_id=lot.id,
                    occurred_at=lot.expires_at,
                )

    def record_renewal(
        self, renewal: Renewal, reference_type: ReferenceType, reference_id: str | None
    ) -> None:
        """A renewal in the ledger: what expired (subscription, then lots due), the grant."""
        if renewal.expired_subscription:
            self.post(
                LedgerKind.EXPIRY,
                Bucket.SUBSCRIPTION,
                -renewal.expired_subscription,
                reference_type,
                reference_id,
                occurred_at=renewal.at,
            )
        if renewal.expired_packs:
            for lot in sorted(self.live_lots(), key=_spend_order):
                if lot.expires_at <= renewal.at:
                    self.post(
                        LedgerKind.EXPIRY,
                        Bucket.PACK,
                        -lot.remaining,
                        ReferenceType.PURCHASE,
                        lot.id,
                        lot_id=lot.id,
                        occurred_at=renewal.at,
                    )
        if renewal.granted:
            self.post(
                LedgerKind.GRANT,
                Bucket.SUBSCRIPTION,
                renewal.granted,
                reference_type,
                reference_id,
                occurred_at=renewal.at,
            )

    def replace_cycle(self, renewal: Renewal, reference_id: str | None) -> None:
        """A new subscription replaces the cycle: what the old one left expires at once.

        ``state.lots`` are then every lot not yet past its date at ``renewal.at``: they
        expire there even before their date, and their date moves there, so credits a
        failed run gives back later expire too instead of reviving.
        """
        if renewal.expired_subscription:
            self.post(
                LedgerKind.EXPIRY,
                Bucket.SUBSCRIPTION,
                -renewal.expired_subscription,
                ReferenceType.SUBSCRIPTION,
                reference_id,
                occurred_at=renewal.at,
            )
        # Every lot, even one with nothing left (its credits may be held): held credits that
        # come back after the start expire too.
        for lot_id, lot in self._lots.items():
            if lot.bucket is not Bucket.PACK:
                continue  # bonus lots keep their own dates
            if lot.expires_at > renewal.at:
                lot.expires_at, lot.changed = renewal.at, True
            if lot.remaining:
                self.post(
                    LedgerKind.EXPIRY,
                    Bucket.PACK,
                    -lot.remaining,
                    ReferenceType.PURCHASE,
                    lot_id,
                    lot_id=lot_id,
                    occurred_at=renewal.at,
                )
        if renewal.granted:
            self.post(
                LedgerKind.GRANT,
                Bucket.SUBSCRIPTION,
                renewal.granted,
                ReferenceType.SUBSCRIPTION,
                reference_id,
                occurred_at=renewal.at,
            )

    def lot_changes(self, bucket: Bucket = Bucket.PACK) -> tuple[LotChange, ...]:
        return tuple(
            LotChange(lot_id, lot.remaining, lot.expires_at)
            for lot_id, lot in self._lots.items()
            if lot.changed and lot.bucket is bucket
        )

    def plan_change(self) -> ScheduledChange | None:
        """A scheduled downgrade the renewals recorded here made the plan in force."""
        terms = self.state.terms
        if terms is None or self.renewed_at is None:
            return None
        return terms.change_due(self.renewed_at)

    def plan(self, **parts: object) -> WritePlan:
        return WritePlan(
            account_id=self.state.account_id,
            now=self.now,
            wallet=self.wallet,
            postings=tuple(self.postings),
            lots=self.lot_changes(),
            bonus_lots=self.lot_changes(Bucket.BONUS),
            events=tuple(self.events),
            subscription_id=self.state.subscription_id,
            plan_change=self.plan_change(),
            **parts,  # type: ignore[arg-type]
        )


_spend_order = lot_order


def bonus_lots_after(state: AccountState, plan: WritePlan) -> tuple[PackLot, ...]:
    """The account's bonus lots as ``plan`` leaves them (a replay leaves them as they were)."""
    lots = {lot.id: lot for lot in state.bonus_lots}
    if plan.replay_of is None:
        for change in plan.bonus_lots:
            before = lots.get(change.lot_id)
            granted_at = before.purchased_at if before else plan.now
            lots[change.lot_id] = PackLot(
                change.lot_id, change.remaining, change.expires_at, granted_at
            )
    return tuple(lots.values())


def acting_at(state: AccountState, reading: datetime) -> datetime:
    """The instant a write on ``state`` acts at (see :func:`acting_instant`)."""
    return acting_instant(reading, state.wallet, state.terms)


def replayed(state: AccountState, key: str, fingerprint: str) -> str | None:
    """The first result under ``key``, or None; the same key for other arguments is refused."""
    record = state.idempotency
    if record is None or record.key != key:
        return None
    # The operation is part of the fingerprint: one key can't serve two mutations.
    check_retry(key, record.fingerprint, fingerprint)
    return record.result_id


@dataclass(frozen=True, slots=True)
class RunRequest:
    tool: Tool
    cost: int | None  # the tool's tariff; None when it has none
    prompt: str | None
    key: str
    operation: str
    fingerprint: str
    generation_id: str
    # How many runs the account's plan allows at once (0: no cap), by plan.
    active_limits: Mapping[Plan | None, int] = field(default_factory=dict)


def plan_run(state: AccountState, request: RunRequest, reading: datetime) -> WritePlan:
    """Run a generator: renewals due, then the cost taken in spend order and held for the run.

    Raises ``InsufficientCredits`` (nothing written) when the account cannot pay.
    """
    now = acting_at(state, reading)
    first = replayed(state, request.key, request.fingerprint)
    if first is not None:
        return WritePlan(state.account_id, now, state.wallet, replay_of=first)
    plan = state.terms.plan if state.terms else None
    check_room_for_another(state.active_generations, request.active_limits.get(plan, 0))
    if request.cost is None:
        raise InvalidInput("tool", f"{request.tool.value} has no tariff.")
    book = Book.open(state, now)
    book.bring_up_to_date()
    lots = book.live_lots() if book.pack_balance else []
    bonus = book.live_lots(Bucket.BONUS) if book.bonus_balance else []
    portions = allocate(request.cost, book.subscription_balance, lots, bonus)
    generation_id = request.generation_id
    holds = []
    for portion in portions:
        book.post(
            LedgerKind.SPEND,
            portion.bucket,
            -portion.amount,
            ReferenceType.GENERATION,
            generation_id,
            lot_id=portion.lot_id,
            tool=request.tool,
        )
        from_subscription = portion.bucket is Bucket.SUBSCRIPTION
        holds.append(
            NewHold(
                portion.bucket,
                portion.amount,
                portion.lot_id,
                state.subscription_id if from_subscription else None,
                book.cycle_index if from_subscription else None,
            )
        )
    book.events.append(GenerationUpdated(generation_id, state.account_id))
    return book.plan(
        new_generation=NewGeneration(
            generation_id, request.tool, request.cost, request.prompt, now
        ),
        new_holds=tuple(holds),
        idempotency=IdempotencyRecord(
            request.key, request.operation, request.fingerprint, generation_id
        ),
    )


def plan_finish(
    state: AccountState,
    generation: Generation,
    holds: list[OpenHold],
    reading: datetime,
    finish: Finish,
    *,
    detail: str | None,
    check: bool = True,
) -> WritePlan:
    """A run ended: completion settles its holds; failure or cancellation releases them.

    A released portion goes back to the bucket it came from if that bucket still lives in
    the recorded cycle (after the renewals due), else it comes back and expires at once.
    ``check``: the lifecycle allows this ending (the sweep judges staleness itself).
    """
    status = check_can_finish(generation, finish) if check else ENDS_IN[finish]
    now = acting_at(state, reading)
    book = Book.open(state, now)
    book.bring_up_to_date()
    if finish is Finish.COMPLETE:
        changes = tuple((hold.id, HoldStatus.SETTLED) for hold in holds)
        change = GenerationChange(generation.id, status, now, result_url=detail)
    else:
        release_holds(book, generation, holds)
        changes = tuple((hold.id, HoldStatus.RELEASED) for hold in holds)
        change = GenerationChange(generation.id, status, now, failure_reason=detail)
    book.events.append(GenerationUpdated(generation.id, state.account_id))
    facts: tuple[Fact, ...] = ()
    if status is not GenerationStatus.CANCELED:
        succeeded = status is GenerationStatus.SUCCEEDED
        facts = (
            GenerationEnded(
                generation.id,
                generation.tool.value,
                generation.cost,
                succeeded,
                None if succeeded else detail,
            ),
        )
    return book.plan(generation_change=change, hold_changes=changes, facts=facts)


def release_holds(book: Book, generation: Generation, holds: list[OpenHold]) -> None:
    """Refund each held portion; what comes back to an expired bucket expires at once."""
    portions = [
        HeldPortion(
            hold.bucket,
            hold.amount,
            cycle=(hold.subscription_id, hold.cycle_index),
            lot_id=hold.lot_id,
            lot_expires_at=book.lot_expires_at(hold.lot_id) if hold.lot_id else None,
        )
        for hold in holds
    ]
    for outcome in release(portions, book.recorded_cycle, book.now):
        portion = outcome.portion
        for kind, amount in (
            [(LedgerKind.REFUND, portion.amount), (LedgerKind.EXPIRY, -portion.amount)]
            if outcome.expires
            else [(LedgerKind.REFUND, portion.amount)]
        ):
            book.post(
                kind,
                portion.bucket,
                amount,
                ReferenceType.GENERATION,
                generation.id,
                lot_id=portion.lot_id,
                tool=generation.tool,
            )


def plan_renewals(state: AccountState, reading: datetime) -> WritePlan:
    """Only the renewals due (the sweep, and the opening of writes not planned here yet)."""
    book = Book.open(state, acting_at(state, reading))
    book.bring_up_to_date()
    return book.plan()


def plan_settlement(
    state: AccountState,
    sale: Sale,
    payment: ReportedPayment,
    reading: datetime,
    *,
    pack_on_sale: bool,
) -> tuple[SettlementDecision, WritePlan]:
    """What a payment means for a pending purchase, and the write: renewals due first, then,
    for a grant, the pack's credits in a lot that lives to the end of the cycle in force now
    (not the one at checkout)."""
    book = Book.open(state, acting_at(state, reading))
    book.bring_up_to_date()
    terms = state.terms
    decision = settle(
        sale,
        payment,
        subscription_active=(
            terms is not None and terms.allows_packs_at(book.now) and book.cycle_ends_at is not None
        ),
        pack_on_sale=pack_on_sale,
    )
    if decision.settlement is Settlement.GRANT:
        assert book.cycle_ends_at is not None  # a grant needs a live cycle
        book.add_lot(sale.purchase_id, book.cycle_ends_at, book.now)
        book.post(
            LedgerKind.GRANT,
            Bucket.PACK,
            sale.credits,
            ReferenceType.PURCHASE,
            sale.purchase_id,
            lot_id=sale.purchase_id,
        )
    return decision, book.plan()


def entries_of(postings: tuple[Posting, ...]) -> list[Entry]:
    return [
        Entry(
            n,
            p.kind,
            p.bucket,
            p.amount,
            p.balance_after,
            p.reference_type.value,
            p.reference_id,
            p.lot_id,
            p.occurred_at,
        )
        for n, p in enumerate(postings)
    ]


def webhook_events(
    state: AccountState, plan: WritePlan, alerts: BalanceAlerts
) -> tuple[list[OutgoingEvent], list[Entry]]:
    """The outgoing events a plan raises (judged from the balances the state was read with)."""
    if plan.replay_of is not None:
        return [], []
    entries = entries_of(plan.postings)
    before = Balances(
        state.wallet.subscription_balance, state.wallet.pack_balance, state.wallet.bonus_balance
    )
    events = decide_events(state.account_id, before, entries, alerts, plan.facts, plan.now)
    return events, entries


@dataclass(frozen=True, slots=True)
class AdjustmentRequest:
    """Support adjusts an account: ``amount`` > 0 grants a bonus lot, < 0 takes credits back.

    The input rules (``adjustments.validate_*``) were applied already; ``expires_at`` is UTC.
    """

    amount: int
    reason: str
    actor: str
    expires_at: datetime | None
    key: str
    operation: str
    fingerprint: str
    adjustment_id: str


def plan_adjustment(
    state: AccountState, request: AdjustmentRequest, reading: datetime
) -> WritePlan:
    """Renewals and bonus expiries due, then one ADJUSTMENT entry per bucket (and lot) moved.

    A bonus is one entry in a new lot; a correction spanning buckets is one entry for each
    part, all naming the adjustment. Raises ``InsufficientCredits`` (nothing written) when a
    correction asks for more than the account holds.
    """
    now = acting_at(state, reading)
    first = replayed(state, request.key, request.fingerprint)
    if first is not None:
        return WritePlan(state.account_id, now, state.wallet, replay_of=first)
    book = Book.open(state, now)
    book.bring_up_to_date()
    adjustment_id = request.adjustment_id
    expires_at: datetime | None = None
    if request.amount > 0:
        expires_at = bonus_expiry(request.expires_at, book.cycle_ends_at, now)
        check_total_after(book.wallet.total, request.amount)
        book.add_lot(adjustment_id, expires_at, now, Bucket.BONUS)
        parts: list[tuple[Bucket, int, str | None]] = [
            (Bucket.BONUS, request.amount, adjustment_id)
        ]
    else:
        portions = allocate(
            -request.amount,
            book.subscription_balance,
            book.live_lots(),
            book.live_lots(Bucket.BONUS),
            what="This correction takes",
        )
        parts = [(p.bucket, -p.amount, p.lot_id) for p in portions]
    for bucket, amount, lot_id in parts:
        book.post(
            LedgerKind.ADJUSTMENT,
            bucket,
            amount,
            ReferenceType.ADJUSTMENT,
            adjustment_id,
            lot_id=lot_id,
            reason=request.reason,
            actor=request.actor,
        )
    return book.plan(
        new_adjustment=NewAdjustment(
            adjustment_id, request.amount, request.reason, request.actor, now, expires_at
        ),
        idempotency=IdempotencyRecord(
            request.key, request.operation, request.fingerprint, adjustment_id
        ),
    )
