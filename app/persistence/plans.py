"""An account's state read under its lock, and a write plan written in few round trips.

SQLAlchemy Core over the same SQLModel tables, each statement built once at import (the
compiled form is cached per dialect). On PostgreSQL a write is: BEGIN, ``SELECT ... FOR
UPDATE`` of the account row, one statement reading the rest of the state (after the lock
is granted: a joined ``FOR UPDATE`` would see the other rows as they were before the wait
under READ COMMITTED), one statement of data-modifying CTEs writing the whole plan with its
``pg_notify``, COMMIT. SQLite runs the same reads and ordinary statements per part under
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.aggregate import AccountState, IdempotencyRecord, LotChange, OpenHold, WritePlan
from app.domain.model import BillingInterval, Bucket, GenerationStatus, HoldStatus, Plan, Tool
from app.domain.purchases import ProviderName, PurchaseStatus
from app.domain.records import Generation, PackPurchase
from app.domain.spending import PackLot, lot_order
from app.domain.subscriptions import ScheduledChange, SubscriptionTerms
from app.domain.wallet import Wallet
from app.persistence import outbox
from app.persistence.driver import DriverConnection
from app.persistence.tables import (
    ACTIVE_LITERALS,
    AccountRow,
    CreditAdjustmentRow,
    CreditPackRow,
    GenerationRow,
    HoldRow,
    IdempotencyRow,
    LedgerEntryRow,
    PackPurchaseRow,
    SubscriptionRow,
    TariffRow,
)

# Where a statement runs: SQLAlchemy's connection, or the driver lane's (driver.py).
Connection = AsyncConnection | DriverConnection

accounts: sa.Table = AccountRow.__table__  # type: ignore[attr-defined]
subscriptions: sa.Table = SubscriptionRow.__table__  # type: ignore[attr-defined]
lots_t: sa.Table = PackPurchaseRow.__table__  # type: ignore[attr-defined]
idempotency_t: sa.Table = IdempotencyRow.__table__  # type: ignore[attr-defined]
holds_t: sa.Table = HoldRow.__table__  # type: ignore[attr-defined]
generations_t: sa.Table = GenerationRow.__table__  # type: ignore[attr-defined]
ledger_t: sa.Table = LedgerEntryRow.__table__  # type: ignore[attr-defined]
adjustments_t: sa.Table = CreditAdjustmentRow.__table__  # type: ignore[attr-defined]
tariffs_t: sa.Table = TariffRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LockedAccount:
    id: str
    email: str
    created_at: datetime
    subscription_id: str | None
    wallet: Wallet
    # The row's version as read: after the lock's own move, or, read without the lock, the
    # one an unlocked write must still find (``write_plan``'s ``expected_version``).
    version: int


# What a write locks and a read shows of the account row: one list for both.
ACCOUNT_COLUMNS = (
    accounts.c.id,
    accounts.c.email,
    accounts.c.created_at,
    accounts.c.subscription_id,
    accounts.c.subscription_balance,
    accounts.c.pack_balance,
    accounts.c.cycle_index,
    accounts.c.cycle_ends_at,
    accounts.c.bonus_balance,
)
# And what a write's state read takes of it: those and the row's version.
LOCKED_COLUMNS = (*ACCOUNT_COLUMNS, accounts.c.version)

# The subscription's terms as a state read and a client's read join them (``_terms_of``'s
# parameters, in its order).
TERMS_COLUMNS = (
    subscriptions.c.plan,
    subscriptions.c.interval,
    subscriptions.c.started_at,
    subscriptions.c.monthly_credits,
    subscriptions.c.canceled_at,
    subscriptions.c.created_at.label("subscription_created_at"),
    subscriptions.c.scheduled_plan,
    subscriptions.c.scheduled_credits,
    subscriptions.c.scheduled_from,
)

# The account's lock moves its version: a holder of the lock may write any part of the
# account's state, and a run written without the lock (``write_plan``'s ``expected_version``)
# must see that it did. The UPDATE's row lock (FOR NO KEY UPDATE) conflicts with itself, so
# writers queue on it as on ``SELECT ... FOR UPDATE``; inserts that only reference the row
# (their foreign keys' KEY SHARE) no longer wait for it.
_MOVE_VERSION = {"version": accounts.c.version + 1}
LOCK = (
    sa.update(accounts)
    .where(accounts.c.id == sa.bindparam("account_id"))
    .values(_MOVE_VERSION)
    .returning(*LOCKED_COLUMNS)
)


def _lock_owner(table: sa.Table, key: str) -> Any:
    """The account row of the one ``table`` row named by ``key``, locked (its owner never
    changes, so it can be read before the lock; the row itself is read after it)."""
    owner = sa.select(table.c.account_id).where(table.c.id == sa.bindparam(key))
    return (
        sa.update(accounts)
        .where(accounts.c.id == owner.scalar_subquery())
        .values(_MOVE_VERSION)
        .returning(*LOCKED_COLUMNS)
    )


LOCK_OWNER_OF_GENERATION = _lock_owner(generations_t, "generation_id")
LOCK_OWNER_OF_PURCHASE = _lock_owner(lots_t, "purchase_id")

# One statement for the rest of the state: the subscription, the idempotency record under
# the request's key, and one row per lot with credits left or held by the generation named.
_held_lots = (
    sa.select(holds_t.c.lot_id)
    .where(holds_t.c.generation_id == sa.bindparam("generation_id"))
    .where(holds_t.c.status == HoldStatus.OPEN.value)
    .where(holds_t.c.lot_id.is_not(None))
)
# The active statuses written into the SQL as literals, the very predicate of the partial
# index ``ix_generations_active`` (tables.py), so the planner counts an account's active runs
# from that index alone. With them as parameters it could not prove the predicate, and it
# intersected the account's rows with every QUEUED run of every account: with a backlog of
# 25,000 queued runs, 1.4 ms per run, the cause of the bench's write rows slowing down.
ACTIVE = generations_t.c.status.in_([sa.literal_column(v) for v in ACTIVE_LITERALS])
_active = (
    sa.select(sa.func.count())
    .select_from(generations_t)
    .where(generations_t.c.account_id == accounts.c.id)
    .where(ACTIVE)
    .scalar_subquery()
)


# A plan's cap on runs at once, as a statement's parameters (0: no cap, the default).
def cap_parameter(plan: Plan) -> str:
    return f"cap_{plan.value.lower()}"


def _cap_of(plan_column: Any) -> Any:
    return sa.case(
        *(
            (plan_column == plan.value, sa.bindparam(cap_parameter(plan), 0, type_=sa.Integer))
            for plan in Plan
        ),
        else_=0,
    )


# Counted only where a cap can apply: the subscription's plan or the plan scheduled to take
# over has one (a run acts under one of the two). An uncapped plan's count is never used,
# and it is not bounded: every queued run of the account, read through the index and, until
# a vacuum marks the pages all-visible, the heap (the bench's write rows slowed down round
# by round with it, as each account's queue grew: bench/README.md).
_counted_active = sa.case(
    (
        sa.or_(_cap_of(subscriptions.c.plan) > 0, _cap_of(subscriptions.c.scheduled_plan) > 0),
        _active,
    ),
    else_=0,
)
_STATE_COLUMNS = (
    sa.literal(Bucket.PACK.value).label("bucket"),
    *TERMS_COLUMNS,
    _counted_active.label("active_generations"),
    idempotency_t.c.operation,
    idempotency_t.c.fingerprint,
    idempotency_t.c.result_id,
    lots_t.c.id.label("lot_id"),
    lots_t.c.remaining,
    lots_t.c.expires_at,
    lots_t.c.purchased_at,
)
_STATE_FROM = (
    accounts.outerjoin(subscriptions, subscriptions.c.id == accounts.c.subscription_id)
    .outerjoin(
        idempotency_t,
        sa.and_(
            idempotency_t.c.account_id == accounts.c.id,
            idempotency_t.c.key == sa.bindparam("key"),
        ),
    )
    .outerjoin(
        lots_t,
        sa.and_(
            lots_t.c.account_id == accounts.c.id,
            lots_t.c.expires_at.is_not(None),
            sa.or_(lots_t.c.remaining > 0, lots_t.c.id.in_(_held_lots)),
        ),
    )
)


def _state_first(columns: Sequence[Any] = (), joined: Any = None) -> sa.Select[Any]:
    """The account's row of the state: its subscription, the idempotency record, one row
    per lot; ``columns`` of ``joined`` beside them (one row at most, ``ON true``)."""
    source = _STATE_FROM if joined is None else _STATE_FROM.outerjoin(joined, sa.true())
    return (
        sa.select(*_STATE_COLUMNS, *columns)
        .select_from(source)
        .where(accounts.c.id == sa.bindparam("account_id"))
    )


def _branch(
    first: sa.Select[Any], marker: str, columns: dict[str, Any], table: Any, where: Any
) -> Any:
    """Rows of ``table`` beside ``first``'s, in the same union: ``marker`` in ``bucket``, the
    columns ``columns`` names, typed NULL in the others."""
    selected = []
    for column in first.selected_columns:
        if column.name == "bucket":
            selected.append(sa.literal(marker).label("bucket"))
        elif column.name in columns:
            selected.append(columns[column.name].label(column.name))
        else:
            selected.append(sa.cast(sa.null(), column.type).label(column.name))
    return sa.select(*selected).select_from(table).where(where)


def _with_bonus_lots(first: sa.Select[Any], bonus: dict[str, Any], where: Any) -> Any:
    """``first`` and, after it, one row per bonus lot ``where`` picks. A union of two
    indexed reads, still one statement."""
    return sa.union_all(first, _branch(first, Bucket.BONUS.value, bonus, adjustments_t, where))


_bonus_lot_columns = {
    "lot_id": adjustments_t.c.id,
    "remaining": adjustments_t.c.remaining,
    "expires_at": adjustments_t.c.expires_at,
    "purchased_at": adjustments_t.c.created_at,
}
_live_bonus_lots = sa.and_(
    adjustments_t.c.account_id == sa.bindparam("account_id"),
    adjustments_t.c.expires_at.is_not(None),
    sa.or_(adjustments_t.c.remaining > 0, adjustments_t.c.id.in_(_held_lots)),
)
STATE = _with_bonus_lots(_state_first(), _bonus_lot_columns, _live_bonus_lots)
# The same with the account's row: for a transaction whose lock returned nothing
# (``begin_locking``), and for a run's read without the lock (``write_plan``).
ACCOUNT_STATE = _with_bonus_lots(_state_first(LOCKED_COLUMNS), _bonus_lot_columns, _live_bonus_lots)

# An id as the lock's literal: only the characters of the ids accounts are given (UUIDs).
_LITERAL_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_BEGIN_LOCKING = (
    f"BEGIN; UPDATE {accounts.name} SET {accounts.c.version.name} = {accounts.c.version.name} + 1"
    f" WHERE {accounts.c.id.name} = '{{}}'"
)


def begin_locking(account_id: str) -> str | None:
    """BEGIN and the account's lock as one simple query (one round trip where the lock's
    own statement is a second one); the id goes in as a literal, so only an id of the
    characters ids are made of (None: any other, which takes the two statements)."""
    if _LITERAL_ID.fullmatch(account_id) is None:
        return None
    return _BEGIN_LOCKING.format(account_id)


# Ending a generation: the state, the generation's row locked, and its open holds, in one
# statement read after the account's lock. ``claimGenerations`` changes generation rows
# without the account lock, so the row is locked here too (account first, then the
# generation: the order every writer takes). Under READ COMMITTED a locked row that
# changed while this statement waited is returned as it is now; the other rows are as of
# the statement's start, which is after the account lock, and only writers holding that
# lock change them.
_generation = (
    sa.select(*(c.label(f"g_{c.name}") for c in generations_t.c))
    .where(generations_t.c.id == sa.bindparam("generation_id"))
    .with_for_update()
    .cte("locked_generation")
)
_HOLD = "HOLD"  # the union's rows of open holds (``bucket`` tells the rows apart)
_HOLD_COLUMNS = {
    "hold_id": holds_t.c.id,
    "hold_bucket": holds_t.c.bucket,
    "hold_amount": holds_t.c.amount,
    "hold_subscription_id": holds_t.c.subscription_id,
    "hold_cycle_index": holds_t.c.cycle_index,
    "hold_lot_id": holds_t.c.lot_id,
}
_finish_first = _state_first(
    [
        *_generation.c,
        *(sa.cast(sa.null(), c.type).label(name) for name, c in _HOLD_COLUMNS.items()),
    ],
    _generation,
)
FINISH_STATE = sa.union_all(
    _finish_first,
    _branch(_finish_first, Bucket.BONUS.value, _bonus_lot_columns, adjustments_t, _live_bonus_lots),
    _branch(
        _finish_first,
        _HOLD,
        _HOLD_COLUMNS,
        holds_t,
        sa.and_(
            holds_t.c.generation_id == sa.bindparam("generation_id"),
            holds_t.c.status == HoldStatus.OPEN.value,
        ),
    ),
)

# Settling a purchase: the state, the purchase's row locked (after the account's, as every
# writer of a purchase's status takes them; the checkout is noted without the account lock)
# and whether its pack is on sale, in one statement.
_PURCHASE_COLUMNS = (
    lots_t.c.id,
    lots_t.c.account_id,
    lots_t.c.pack_id,
    lots_t.c.credits,
    lots_t.c.price_cents,
    lots_t.c.currency,
    lots_t.c.status,
    lots_t.c.provider,
    lots_t.c.created_at,
    lots_t.c.purchased_at,
    lots_t.c.expires_at,
    lots_t.c.checkout_session_id,
    lots_t.c.checkout_url,
    lots_t.c.status_reason,
    lots_t.c.refunded_cents,
    lots_t.c.revoked_credits,
    lots_t.c.revocation_target,
)
_purchase = (
    sa.select(*(c.label(f"p_{c.name}") for c in _PURCHASE_COLUMNS))
    .where(lots_t.c.id == sa.bindparam("purchase_id"))
    .with_for_update()
    .cte("locked_purchase")
)
_packs = CreditPackRow.__table__  # type: ignore[attr-defined]
_settle_first = _state_first(
    [*_purchase.c, _packs.c.on_sale.label("pack_on_sale")],
    _purchase.outerjoin(_packs, _packs.c.id == _purchase.c.p_pack_id),
)
SETTLEMENT_STATE = sa.union_all(
    _settle_first,
    _branch(_settle_first, Bucket.BONUS.value, _bonus_lot_columns, adjustments_t, _live_bonus_lots),
)


def _terms(r: Any) -> SubscriptionTerms | None:
    """The subscription's terms from a row of a statement joined with it (or None)."""
    return _terms_of(
        r.plan,
        r.interval,
        r.started_at,
        r.monthly_credits,
        r.canceled_at,
        r.subscription_created_at,
        r.scheduled_plan,
        r.scheduled_credits,
        r.scheduled_from,
    )


def _terms_of(
    plan: str | None,
    interval: str,
    started_at: datetime,
    monthly_credits: int,
    canceled_at: datetime | None,
    recorded_at: datetime,
    scheduled_plan: str | None,
    scheduled_credits: int | None,
    scheduled_from: datetime | None,
) -> SubscriptionTerms | None:
    if plan is None:
        return None
    scheduled = None
    if scheduled_plan and scheduled_credits is not None and scheduled_from is not None:
        scheduled = ScheduledChange(Plan(scheduled_plan), scheduled_credits, scheduled_from)
    return SubscriptionTerms(
        plan=Plan(plan),
        interval=BillingInterval(interval),
        started_at=started_at,
        monthly_credits=monthly_credits,
        canceled_at=canceled_at,
        recorded_at=recorded_at,
        scheduled=scheduled,
    )


async def lock_account(conn: Connection, account_id: str) -> LockedAccount | None:
    """The account row, locked for this transaction (SQLite: BEGIN IMMEDIATE already)."""
    return _locked(await conn.execute(LOCK, {"account_id": account_id}))


def _locked(result: Any) -> LockedAccount | None:
    row = result.first()
    return None if row is None else _account_of(row)


def _account_of(row: Any) -> LockedAccount:
    wallet = Wallet(
        row.subscription_balance,
        row.pack_balance,
        row.cycle_index,
        row.cycle_ends_at,
        row.bonus_balance,
    )
    return LockedAccount(
        row.id, row.email, row.created_at, row.subscription_id, wallet, row.version
    )


async def read_state(
    conn: Connection,
    account: LockedAccount,
    *,
    key: str | None = None,
    generation_id: str | None = None,
    caps: Mapping[Plan | None, int] | None = None,
) -> AccountState:
    """The rest of the account's state, read once its row is locked; its active runs are
    counted where ``caps`` (a plan's cap on runs at once) can apply, else read as 0."""
    params = {"account_id": account.id, "key": key, "generation_id": generation_id}
    result = await conn.execute(STATE, params | cap_parameters(caps))
    return _state(account, result.all(), key)


async def read_account_state(
    conn: Connection,
    account_id: str,
    key: str | None,
    caps: Mapping[Plan | None, int] | None = None,
) -> tuple[LockedAccount, AccountState] | None:
    """The account's row, its version and the rest of its state in one statement (None: no
    such account), read once the row is locked or, for a run written without the lock, as
    one snapshot; active runs counted as ``read_state`` counts them."""
    params = {"account_id": account_id, "key": key, "generation_id": None}
    result = await conn.execute(ACCOUNT_STATE, params | cap_parameters(caps))
    rows = result.all()
    account = next((_account_of(r) for r in rows if r.bucket == Bucket.PACK.value), None)
    return None if account is None else (account, _state(account, rows, key))


def cap_parameters(caps: Mapping[Plan | None, int] | None) -> dict[str, int]:
    """Each plan's cap as the state statements' parameters (an absent plan: no cap)."""
    return {cap_parameter(plan): (caps or {}).get(plan, 0) for plan in Plan}


def _state(account: LockedAccount, rows: Sequence[Any], key: str | None) -> AccountState:
    first = next(r for r in rows if r.bucket == Bucket.PACK.value)
    terms = _terms(first) if account.subscription_id is not None else None
    record = None
    if key is not None and first.result_id is not None:
        record = IdempotencyRecord(key, first.operation, first.fingerprint, first.result_id)
    lots: dict[str, list[PackLot]] = {Bucket.PACK.value: [], Bucket.BONUS.value: []}
    for r in rows:
        if r.lot_id is not None:
            lots[r.bucket].append(PackLot(r.lot_id, r.remaining, r.expires_at, r.purchased_at))
    return AccountState(
        account.id,
        account.subscription_id,
        account.wallet,
        terms,
        tuple(sorted(lots[Bucket.PACK.value], key=lot_order)),
        record,
        active_generations=first.active_generations,
        bonus_lots=tuple(sorted(lots[Bucket.BONUS.value], key=lot_order)),
    )


async def lock_owner_of_generation(conn: Connection, generation_id: str) -> LockedAccount | None:
    """The account of the generation, locked (None: no such generation)."""
    return _locked(await conn.execute(LOCK_OWNER_OF_GENERATION, {"generation_id": generation_id}))


async def lock_owner_of_purchase(conn: Connection, purchase_id: str) -> LockedAccount | None:
    """The account of the purchase, locked (None: no such purchase)."""
    return _locked(await conn.execute(LOCK_OWNER_OF_PURCHASE, {"purchase_id": purchase_id}))


@dataclass(frozen=True, slots=True)
class EndingState:
    """What ending a generation needs: the account's state, the generation (its row
    locked) and the credits it holds, in hold order."""

    state: AccountState
    generation: Generation
    holds: list[OpenHold]


async def read_ending_state(
    conn: Connection, account: LockedAccount, generation_id: str
) -> EndingState:
    """The state, the generation locked and its open holds; the account is locked already."""
    result = await conn.execute(
        FINISH_STATE, {"account_id": account.id, "key": None, "generation_id": generation_id}
    )
    rows = result.all()
    first = next(r for r in rows if r.bucket == Bucket.PACK.value)
    generation = generation_record(first, prefix="g_")
    holds = [
        OpenHold(
            r.hold_id,
            Bucket(r.hold_bucket),
            r.hold_amount,
            r.hold_subscription_id,
            r.hold_cycle_index,
            r.hold_lot_id,
        )
        for r in rows
        if r.bucket == _HOLD
    ]
    holds.sort(key=lambda hold: hold.id)
    lots = [r for r in rows if r.bucket != _HOLD]
    return EndingState(_state(account, lots, None), generation, holds)


@dataclass(frozen=True, slots=True)
class SettlingState:
    """What settling a purchase needs: the account's state, the purchase as it is under its
    row lock (and the checkout it names), whether its pack is on sale."""

    state: AccountState
    purchase: PackPurchase
    checkout_session_id: str | None
    pack_on_sale: bool


async def read_settling_state(
    conn: Connection, account: LockedAccount, purchase_id: str
) -> SettlingState:
    """The state, the purchase locked and its pack; the account is locked already."""
    result = await conn.execute(
        SETTLEMENT_STATE,
        {"account_id": account.id, "key": None, "generation_id": None, "purchase_id": purchase_id},
    )
    rows = result.all()
    first = next(r for r in rows if r.bucket == Bucket.PACK.value)
    status = PurchaseStatus(first.p_status)
    purchase = PackPurchase(
        id=first.p_id,
        account_id=first.p_account_id,
        pack_id=first.p_pack_id,
        credits=first.p_credits,
        price_cents=first.p_price_cents,
        currency=first.p_currency,
        status=status,
        provider=ProviderName(first.p_provider),
        created_at=first.p_created_at,
        purchased_at=first.p_purchased_at,
        expires_at=first.p_expires_at,
        checkout_url=first.p_checkout_url if status is PurchaseStatus.PENDING else None,
        status_reason=first.p_status_reason,
        refunded_cents=first.p_refunded_cents,
        revoked_credits=first.p_revoked_credits,
        revocation_target=first.p_revocation_target,
    )
    return SettlingState(
        _state(account, rows, None),
        purchase,
        first.p_checkout_session_id,
        bool(first.pack_on_sale),
    )


GENERATION = sa.select(generations_t).where(generations_t.c.id == sa.bindparam("generation_id"))
TARIFFS = sa.select(tariffs_t.c.tool, tariffs_t.c.credits)
NOTIFY = sa.text(
    "SELECT pg_notify(CAST(:channel AS text), p) FROM unnest(CAST(:payloads AS text[])) AS p"
)


async def generation(conn: Connection, generation_id: str) -> Generation | None:
    r = (await conn.execute(GENERATION, {"generation_id": generation_id})).first()
    return None if r is None else generation_record(r)


def generation_record(r: Any, prefix: str = "") -> Generation:
    """A generation as recorded, from its row (Core, driver or ORM: read by attribute);
    ``prefix``: its columns' names in a statement that reads them beside others."""

    def column(name: str) -> Any:
        return getattr(r, prefix + name)

    return Generation(
        id=column("id"),
        account_id=column("account_id"),
        tool=Tool(column("tool")),
        cost=column("cost"),
        status=GenerationStatus(column("status")),
        prompt=column("prompt"),
        created_at=column("created_at"),
        started_at=column("started_at"),
        finished_at=column("finished_at"),
        result_url=column("result_url"),
        failure_reason=column("failure_reason"),
    )


async def tariffs(conn: Connection) -> list[tuple[str, int]]:
    return [(r.tool, r.credits) for r in await conn.execute(TARIFFS, {})]


async def notify(conn: Connection, channel: str, payloads: Sequence[str]) -> None:
    """Live events for listeners, sent on commit (PostgreSQL)."""
    if payloads:
        await conn.execute(NOTIFY, {"channel": channel, "payloads": list(payloads)})


# -- reading accounts as clients see them ---------------------------------------------------

_VIEWS_FIRST = sa.select(
    sa.literal(Bucket.PACK.value).label("bucket"),
    *ACCOUNT_COLUMNS,
    *TERMS_COLUMNS,
    sa.cast(sa.null(), lots_t.c.id.type).label("lot_id"),
    sa.cast(sa.null(), lots_t.c.remaining.type).label("remaining"),
    sa.cast(sa.null(), lots_t.c.expires_at.type).label("expires_at"),
    sa.cast(sa.null(), lots_t.c.purchased_at.type).label("purchased_at"),
).select_from(accounts.outerjoin(subscriptions, subscriptions.c.id == accounts.c.subscription_id))


def _one_of_the_ids(column: Any, *, postgres: bool) -> Any:
    """``column`` is one of the ids asked for. PostgreSQL takes them as one array parameter:
    the same SQL text whatever their count, so no per-execution rendering of an expanding IN
    (about a tenth of a served editor read's CPU went to it) and one prepared statement
    instead of one per count."""
    if postgres:
        return column == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(accounts.c.id.type)))
    return column.in_(sa.bindparam("ids", expanding=True))


def _account_views(*, postgres: bool) -> Any:
    """The accounts, then the bonus lots with credits left (each counts until its expiry)."""
    return _with_bonus_lots(
        _VIEWS_FIRST.where(_one_of_the_ids(accounts.c.id, postgres=postgres)),
        _bonus_lot_columns | {"id": adjustments_t.c.account_id},
        sa.and_(
            _one_of_the_ids(adjustments_t.c.account_id, postgres=postgres),
            adjustments_t.c.expires_at.is_not(None),
            adjustments_t.c.remaining > 0,
        ),
    )


ACCOUNT_VIEWS = _account_views(postgres=False)
ACCOUNT_VIEWS_PG = _account_views(postgres=True)


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """An account as stored (balances as of its last write) with its subscription's terms."""

    id: str
    email: str
    created_at: datetime
    subscription_id: str | None
    wallet: Wallet
    terms: SubscriptionTerms | None
    bonus_lots: tuple[PackLot, ...] = ()


# The views' columns in their order: rows are unpacked by position (the hot read; a row's
# attribute lookups were a tenth of its mapping), checked against the statement at import.
_VIEW_ORDER = (
    "bucket",
    *(c.name for c in ACCOUNT_COLUMNS),
    *(c.name for c in TERMS_COLUMNS),
    "lot_id",
    "remaining",
    "expires_at",
    "purchased_at",
)
for _statement in (ACCOUNT_VIEWS, ACCOUNT_VIEWS_PG):
    if tuple(c.name for c in _statement.selected_columns) != _VIEW_ORDER:
        raise AssertionError("the account views' columns moved: update _VIEW_ORDER")


async def stored_accounts(conn: Connection, ids: Sequence[str]) -> list[StoredAccount]:
    """Accounts, their subscriptions and bonus lots in one statement, for any number of ids."""
    found: dict[str, StoredAccount] = {}
    bonus: dict[str, list[PackLot]] = {}
    statement = ACCOUNT_VIEWS_PG if conn.dialect.name == "postgresql" else ACCOUNT_VIEWS
    for row in await conn.execute(statement, {"ids": list(ids)}):
        (
            bucket,
            account_id,
            email,
            created_at,
            subscription_id,
            subscription_balance,
            pack_balance,
            cycle_index,
            cycle_ends_at,
            bonus_balance,
            *terms_columns,
            lot_id,
            remaining,
            expires_at,
            purchased_at,
        ) = row
        if bucket == BONUS:
            lot = PackLot(lot_id, remaining, expires_at, purchased_at)
            bonus.setdefault(account_id, []).append(lot)
            continue
        terms = _terms_of(*terms_columns) if subscription_id is not None else None
        wallet = Wallet(
            subscription_balance, pack_balance, cycle_index, cycle_ends_at, bonus_balance
        )
        found[account_id] = StoredAccount(
            account_id, email, created_at, subscription_id, wallet, terms
        )
    return [
        replace(stored, bonus_lots=tuple(bonus[stored.id])) if stored.id in bonus else stored
        for stored in found.values()
    ]


BONUS = Bucket.BONUS.value


# -- writing a plan -------------------------------------------------------------------------


def _parameters(plan: WritePlan) -> dict[str, Any]:
    wallet, generation, change = plan.wallet, plan.new_generation, plan.generation_change
    record = plan.idempotency
    postings = plan.postings
    adjustment = plan.new_adjustment
    settled, granted = plan.purchase_change, plan.granted_lot()
    return {
        "account_id": plan.account_id,
        "now": plan.now,
        "subscription_balance": wallet.subscription_balance,
        "pack_balance": wallet.pack_balance,
        "bonus_balance": wallet.bonus_balance,
        "cycle_index": wallet.cycle_index,
        "cycle_ends_at": wallet.cycle_ends_at,
        "g_id": generation.id if generation else None,
        "g_tool": generation.tool.value if generation else None,
        "g_cost": generation.cost if generation else None,
        "g_prompt": generation.prompt if generation else None,
        "gc_id": change.id if change else None,
        "gc_status": change.status.value if change else None,
        "gc_result_url": change.result_url if change else None,
        "gc_failure_reason": change.failure_reason if change else None,
        "e_kind": [p.kind.value for p in postings],
        "e_bucket": [p.bucket.value for p in postings],
        "e_amount": [p.amount for p in postings],
        "e_after": [p.balance_after for p in postings],
        "e_reference_type": [p.reference_type.value for p in postings],
        "e_reference_id": [p.reference_id for p in postings],
        "e_lot_id": [p.lot_id for p in postings],
        "e_occurred_at": [p.occurred_at for p in postings],
        "e_reason": [p.reason for p in postings],
        "e_actor": [p.actor for p in postings],
        "h_bucket": [h.bucket.value for h in plan.new_holds],
        "h_lot_id": [h.lot_id for h in plan.new_holds],
        "h_subscription_id": [h.subscription_id for h in plan.new_holds],
        "h_cycle_index": [h.cycle_index for h in plan.new_holds],
        "h_amount": [h.amount for h in plan.new_holds],
        "hc_id": [hold_id for hold_id, _ in plan.hold_changes],
        "hc_status": [status.value for _, status in plan.hold_changes],
        "l_id": [lot.lot_id for lot in _other_lots(plan)],
        "l_remaining": [lot.remaining for lot in _other_lots(plan)],
        "l_expires_at": [lot.expires_at for lot in _other_lots(plan)],
        "bl_id": [lot.lot_id for lot in plan.bonus_lots],
        "bl_remaining": [lot.remaining for lot in plan.bonus_lots],
        "a_id": adjustment.id if adjustment else None,
        "a_amount": adjustment.amount if adjustment else None,
        "a_reason": adjustment.reason if adjustment else None,
        "a_actor": adjustment.actor if adjustment else None,
        "a_expires_at": adjustment.expires_at if adjustment else None,
        "sc_id": plan.subscription_id if plan.plan_change else None,
        "sc_plan": plan.plan_change.plan.value if plan.plan_change else None,
        "sc_credits": plan.plan_change.monthly_credits if plan.plan_change else None,
        "i_key": record.key if record else None,
        "i_operation": record.operation if record else None,
        "i_fingerprint": record.fingerprint if record else None,
        "i_result_id": record.result_id if record else None,
        "ps_id": settled.id if settled else None,
        "ps_status": settled.status.value if settled else None,
        "ps_reason": settled.reason if settled else None,
        "ps_session_id": settled.session_id if settled else None,
        "ps_payment_reference": settled.payment_reference if settled else None,
        "ps_granted_at": plan.now if granted else None,
        "ps_remaining": granted.remaining if granted else None,
        "ps_expires_at": granted.expires_at if granted else None,
    }


def _other_lots(plan: WritePlan) -> tuple[LotChange, ...]:
    """The lots the plan changes but the granted purchase (its settlement writes it: one
    statement must not update a row twice)."""
    granted = plan.granted_lot()
    return plan.lots if granted is None else tuple(lot for lot in plan.lots if lot is not granted)


# PostgreSQL: the whole plan in one statement. Sibling CTEs see one snapshot and none reads
# another's rows, so each writes its own table; foreign keys (holds -> generations) are
# checked at the end of the statement. Arrays carry the variable parts, so the text is fixed.
#
# Every part is joined with ``acc``, the account row's update: no part writes unless it did,
# and none takes a row lock before it (a part's rows come out of its join with ``acc`` only
# once ``acc`` has run, holding the account's row lock), so the statement takes locks in the
# order every writer takes them, account first. Under the lock ``acc`` always updates the
# row. Written without the lock (``expected_version``), it updates the row only if its
# version is still the one the state was read at: the check runs after any wait for the row
# lock, on the row as committed then (READ COMMITTED re-checks an updated row's condition),
# and a row that moved leaves the whole statement writing nothing: ``written`` is 0.
_PG_WRITE = sa.text(
    """
WITH
acc AS (
  UPDATE accounts SET subscription_balance = CAST(:subscription_balance AS integer),
    pack_balance = CAST(:pack_balance AS integer),
    bonus_balance = CAST(:bonus_balance AS integer), cycle_index = CAST(:cycle_index AS integer),
    cycle_ends_at = CAST(:cycle_ends_at AS timestamptz), version = version + 1
  WHERE id = CAST(:account_id AS varchar)
    AND (CAST(:expected_version AS bigint) IS NULL
      OR version = CAST(:expected_version AS bigint))
  RETURNING version AS account_version
),
gen AS (
  INSERT INTO generations (id, account_id, tool, cost, status, prompt, created_at)
  SELECT CAST(:g_id AS varchar), CAST(:account_id AS varchar), CAST(:g_tool AS varchar),
    CAST(:g_cost AS integer), 'QUEUED', CAST(:g_prompt AS varchar), CAST(:now AS timestamptz)
  FROM acc
  WHERE CAST(:g_id AS varchar) IS NOT NULL
),
finished AS (
  UPDATE generations SET status = CAST(:gc_status AS varchar),
    finished_at = CAST(:now AS timestamptz),
    result_url = COALESCE(CAST(:gc_result_url AS varchar), result_url),
    failure_reason = COALESCE(CAST(:gc_failure_reason AS varchar), failure_reason)
  FROM acc
  WHERE id = CAST(:gc_id AS varchar)
),
led AS (
  INSERT INTO ledger_entries (account_id, kind, bucket, amount, balance_after, reference_type,
    reference_id, lot_id, occurred_at, recorded_at, reason, actor)
  SELECT CAST(:account_id AS varchar), e.kind, e.bucket, e.amount, e.after, e.reference_type,
    e.reference_id, e.lot_id, e.occurred_at, CAST(:now AS timestamptz), e.reason, e.actor
  FROM unnest(CAST(:e_kind AS varchar[]), CAST(:e_bucket AS varchar[]),
    CAST(:e_amount AS integer[]), CAST(:e_after AS integer[]),
    CAST(:e_reference_type AS varchar[]), CAST(:e_reference_id AS varchar[]),
    CAST(:e_lot_id AS varchar[]), CAST(:e_occurred_at AS timestamptz[]),
    CAST(:e_reason AS varchar[]), CAST(:e_actor AS varchar[]))
    WITH ORDINALITY AS e(kind, bucket, amount, after, reference_type, reference_id, lot_id,
      occurred_at, reason, actor, n)
  CROSS JOIN acc
  ORDER BY e.n
  RETURNING id
),
held AS (
  INSERT INTO holds (generation_id, account_id, bucket, lot_id, subscription_id, cycle_index,
    amount, status)
  SELECT CAST(:g_id AS varchar), CAST(:account_id AS varchar), h.bucket, h.lot_id,
    h.subscription_id, h.cycle_index, h.amount, 'OPEN'
  FROM unnest(CAST(:h_bucket AS varchar[]), CAST(:h_lot_id AS varchar[]),
    CAST(:h_subscription_id AS varchar[]), CAST(:h_cycle_index AS integer[]),
    CAST(:h_amount AS integer[]))
    WITH ORDINALITY AS h(bucket, lot_id, subscription_id, cycle_index, amount, n)
  CROSS JOIN acc
  ORDER BY h.n
),
moved AS (
  UPDATE holds SET status = c.status
  FROM unnest(CAST(:hc_id AS bigint[]), CAST(:hc_status AS varchar[])) AS c(id, status)
  CROSS JOIN acc
  WHERE holds.id = c.id
),
lot_rest AS (
  UPDATE pack_purchases SET remaining = l.remaining, expires_at = l.expires_at
  FROM unnest(CAST(:l_id AS varchar[]), CAST(:l_remaining AS integer[]),
    CAST(:l_expires_at AS timestamptz[])) AS l(id, remaining, expires_at)
  CROSS JOIN acc
  WHERE pack_purchases.id = l.id
),
bonus_rest AS (
  UPDATE credit_adjustments SET remaining = b.remaining
  FROM unnest(CAST(:bl_id AS varchar[]), CAST(:bl_remaining AS integer[])) AS b(id, remaining)
  CROSS JOIN acc
  WHERE credit_adjustments.id = b.id
),
adjusted AS (
  INSERT INTO credit_adjustments (id, account_id, amount, remaining, reason, actor, created_at,
    expires_at)
  SELECT CAST(:a_id AS varchar), CAST(:account_id AS varchar), CAST(:a_amount AS integer),
    GREATEST(CAST(:a_amount AS integer), 0), CAST(:a_reason AS varchar),
    CAST(:a_actor AS varchar), CAST(:now AS timestamptz), CAST(:a_expires_at AS timestamptz)
  FROM acc
  WHERE CAST(:a_id AS varchar) IS NOT NULL
),
plan_in_force AS (
  UPDATE subscriptions SET plan = CAST(:sc_plan AS varchar),
    monthly_credits = CAST(:sc_credits AS integer), scheduled_plan = NULL,
    scheduled_credits = NULL, scheduled_from = NULL
  FROM acc
  WHERE id = CAST(:sc_id AS varchar)
),
settled AS (
  UPDATE pack_purchases SET status = CAST(:ps_status AS varchar),
    status_reason = CAST(:ps_reason AS varchar),
    checkout_session_id = COALESCE(checkout_session_id, CAST(:ps_session_id AS varchar)),
    payment_reference = CAST(:ps_payment_reference AS varchar),
    remaining = COALESCE(CAST(:ps_remaining AS integer), remaining),
    expires_at = COALESCE(CAST(:ps_expires_at AS timestamptz), expires_at),
    purchased_at = COALESCE(CAST(:ps_granted_at AS timestamptz), purchased_at),
    fulfilled_at = COALESCE(CAST(:ps_granted_at AS timestamptz), fulfilled_at)
  FROM acc
  WHERE id = CAST(:ps_id AS varchar) AND status = 'PENDING'
  RETURNING id
),
idem AS (
  INSERT INTO idempotency_keys (account_id, key, operation, fingerprint, result_id, created_at)
  SELECT CAST(:account_id AS varchar), CAST(:i_key AS varchar), CAST(:i_operation AS varchar),
    CAST(:i_fingerprint AS varchar), CAST(:i_result_id AS varchar), CAST(:now AS timestamptz)
  FROM acc
  WHERE CAST(:i_key AS varchar) IS NOT NULL
),"""
    + outbox.PG_OUTBOX_CTES
    + """SELECT (SELECT count(*) FROM acc) AS written, (SELECT count(*) FROM settled) AS settled,
  (SELECT count(pg_notify(CAST(:channel AS text), p))
    FROM unnest(CAST(:payloads AS text[])) AS p CROSS JOIN acc) AS notified
"""
)


async def write_plan(
    conn: Connection,
    plan: WritePlan,
    notify: tuple[str, Sequence[str]] | None,
    events: Sequence[outbox.EventRow] = (),
    *,
    expected_version: int | None = None,
) -> None:
    """Write every part of ``plan`` and its outbox ``events``; ``notify`` (channel,
    payloads) goes out on commit. With ``expected_version`` (PostgreSQL, a state read
    without the lock, one autocommit statement) only if the account row is still at that
    version: else nothing is written and ``AccountMoved`` is raised."""
    if conn.dialect.name == "postgresql":
        channel, payloads = notify or ("", ())
        params = _parameters(plan) | {"channel": channel, "payloads": list(payloads)}
        params["expected_version"] = expected_version
        written = (await conn.execute(_PG_WRITE, params | outbox.pg_parameters(events))).first()
        if expected_version is not None and (written is None or written.written != 1):
            raise AccountMoved(plan.account_id)
        settled = written.settled if written is not None else 0
    else:
        assert expected_version is None  # SQLite's writes always hold its lock
        assert isinstance(conn, AsyncConnection)  # the lane runs on PostgreSQL only
        ledger_ids, settled = await _write_statements(conn, plan)
        await outbox.insert_events(conn, events, ledger_ids, plan.now)
    if plan.purchase_change is not None and settled != 1:
        # Its row is locked since the state was read PENDING; moved meanwhile, the grant
        # would be a second one: the transaction must not commit.
        raise PurchaseMoved(plan.purchase_change.id)


class AccountMoved(RuntimeError):
    """The account changed after its state was read without the lock: the plan made from it
    was not written (read the state again, under the lock)."""


class PurchaseMoved(RuntimeError):
    """A purchase read PENDING under its lock was not PENDING when its settlement wrote."""


_UPDATE_ACCOUNT = (
    sa.update(accounts)
    .where(accounts.c.id == sa.bindparam("account_id"))
    .values(
        subscription_balance=sa.bindparam("b_subscription"),
        pack_balance=sa.bindparam("b_pack"),
        bonus_balance=sa.bindparam("b_bonus"),
        cycle_index=sa.bindparam("b_cycle_index"),
        cycle_ends_at=sa.bindparam("b_cycle_ends_at", type_=accounts.c.cycle_ends_at.type),
    )
)
_UPDATE_LOT = (
    sa.update(lots_t)
    .where(lots_t.c.id == sa.bindparam("l_id"))
    .values(
        remaining=sa.bindparam("l_remaining"),
        expires_at=sa.bindparam("l_expires_at", type_=lots_t.c.expires_at.type),
    )
)
_UPDATE_BONUS_LOT = (
    sa.update(adjustments_t)
    .where(adjustments_t.c.id == sa.bindparam("bl_id"))
    .values(remaining=sa.bindparam("bl_remaining"))
)
_SETTLE_PURCHASE = (
    sa.update(lots_t)
    .where(lots_t.c.id == sa.bindparam("ps_id"))
    .where(lots_t.c.status == PurchaseStatus.PENDING.value)
    .values(
        status=sa.bindparam("ps_status"),
        status_reason=sa.bindparam("ps_reason"),
        checkout_session_id=sa.func.coalesce(
            lots_t.c.checkout_session_id, sa.bindparam("ps_session_id", type_=sa.String)
        ),
        payment_reference=sa.bindparam("ps_payment_reference"),
        remaining=sa.func.coalesce(
            sa.bindparam("ps_remaining", type_=sa.Integer), lots_t.c.remaining
        ),
        expires_at=sa.func.coalesce(
            sa.bindparam("ps_expires_at", type_=lots_t.c.expires_at.type), lots_t.c.expires_at
        ),
        purchased_at=sa.func.coalesce(
            sa.bindparam("ps_granted_at", type_=lots_t.c.purchased_at.type), lots_t.c.purchased_at
        ),
        fulfilled_at=sa.func.coalesce(
            sa.bindparam("ps_granted_at", type_=lots_t.c.fulfilled_at.type), lots_t.c.fulfilled_at
        ),
    )
)
_SETTLE_KEYS = (
    "ps_id",
    "ps_status",
    "ps_reason",
    "ps_session_id",
    "ps_payment_reference",
    "ps_remaining",
    "ps_expires_at",
    "ps_granted_at",
)
_UPDATE_HOLD = (
    sa.update(holds_t)
    .where(holds_t.c.id == sa.bindparam("hc_id"))
    .values(status=sa.bindparam("hc_status"))
)


async def _write_statements(conn: AsyncConnection, plan: WritePlan) -> tuple[list[int], int]:
    """The same plan as ordinary statements (SQLite, under BEGIN IMMEDIATE); the ids of
    the ledger entries written, in posting order, and the purchases settled (0 or 1)."""
    wallet = plan.wallet
    await conn.execute(
        _UPDATE_ACCOUNT,
        {
            "account_id": plan.account_id,
            "b_subscription": wallet.subscription_balance,
            "b_pack": wallet.pack_balance,
            "b_bonus": wallet.bonus_balance,
            "b_cycle_index": wallet.cycle_index,
            "b_cycle_ends_at": wallet.cycle_ends_at,
        },
    )
    if (generation := plan.new_generation) is not None:
        await conn.execute(
            sa.insert(generations_t),
            {
                "id": generation.id,
                "account_id": plan.account_id,
                "tool": generation.tool.value,
                "cost": generation.cost,
                "status": "QUEUED",
                "prompt": generation.prompt,
                "created_at": plan.now,
            },
        )
    if (change := plan.generation_change) is not None:
        values: dict[str, Any] = {"status": change.status.value, "finished_at": plan.now}
        if change.result_url is not None:
            values["result_url"] = change.result_url
        if change.failure_reason is not None:
            values["failure_reason"] = change.failure_reason
        await conn.execute(
            sa.update(generations_t).where(generations_t.c.id == change.id).values(values)
        )
    # One statement per entry, in order: the entry ids keep the order they were posted in.
    ledger_ids: list[int] = []
    for posting in plan.postings:
        inserted = await conn.execute(
            sa.insert(ledger_t),
            {
                "account_id": plan.account_id,
                "kind": posting.kind.value,
                "bucket": posting.bucket.value,
                "amount": posting.amount,
                "balance_after": posting.balance_after,
                "reference_type": posting.reference_type.value,
                "reference_id": posting.reference_id,
                "lot_id": posting.lot_id,
                "occurred_at": posting.occurred_at,
                "recorded_at": plan.now,
                "reason": posting.reason,
                "actor": posting.actor,
            },
        )
        key = inserted.inserted_primary_key
        assert key is not None
        ledger_ids.append(int(key[0]))
    for hold in plan.new_holds:
        assert generation is not None
        await conn.execute(
            sa.insert(holds_t),
            {
                "generation_id": generation.id,
                "account_id": plan.account_id,
                "bucket": hold.bucket.value,
                "lot_id": hold.lot_id,
                "subscription_id": hold.subscription_id,
                "cycle_index": hold.cycle_index,
                "amount": hold.amount,
                "status": HoldStatus.OPEN.value,
            },
        )
    if plan.hold_changes:
        await conn.execute(
            _UPDATE_HOLD,
            [{"hc_id": hold, "hc_status": status.value} for hold, status in plan.hold_changes],
        )
    if lots := _other_lots(plan):
        await conn.execute(
            _UPDATE_LOT,
            [
                {"l_id": lot.lot_id, "l_remaining": lot.remaining, "l_expires_at": lot.expires_at}
                for lot in lots
            ],
        )
    settled = 0
    if plan.purchase_change is not None:
        params = _parameters(plan)
        moved = await conn.execute(_SETTLE_PURCHASE, {k: params[k] for k in _SETTLE_KEYS})
        settled = moved.rowcount
    if (adjustment := plan.new_adjustment) is not None:
        await conn.execute(
            sa.insert(adjustments_t),
            {
                "id": adjustment.id,
                "account_id": plan.account_id,
                "amount": adjustment.amount,
                "remaining": max(adjustment.amount, 0),
                "reason": adjustment.reason,
                "actor": adjustment.actor,
                "created_at": plan.now,
                "expires_at": adjustment.expires_at,
            },
        )
    if plan.bonus_lots:
        await conn.execute(
            _UPDATE_BONUS_LOT,
            [{"bl_id": lot.lot_id, "bl_remaining": lot.remaining} for lot in plan.bonus_lots],
        )
    if (change_to := plan.plan_change) is not None:
        await conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.id == plan.subscription_id)
            .values(
                plan=change_to.plan.value,
                monthly_credits=change_to.monthly_credits,
                scheduled_plan=None,
                scheduled_credits=None,
                scheduled_from=None,
            )
        )
    if (record := plan.idempotency) is not None:
        await conn.execute(
            sa.insert(idempotency_t),
            {
                "account_id": plan.account_id,
                "key": record.key,
                "operation": record.operation,
                "fingerprint": record.fingerprint,
                "result_id": record.result_id,
                "created_at": plan.now,
            },
        )
    return ledger_ids, settled
