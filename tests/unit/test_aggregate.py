"""The account aggregate: state in, write plan out, with plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.aggregate import (
    AccountState,
    IdempotencyRecord,
    OpenHold,
    RunRequest,
    plan_finish,
    plan_run,
)
from app.domain.errors import IdempotencyConflict, InsufficientCredits
from app.domain.generations import Finish
from app.domain.model import (
    BillingInterval,
    Bucket,
    GenerationStatus,
    HoldStatus,
    LedgerKind,
    Plan,
    ReferenceType,
    Tool,
)
from app.domain.records import Generation
from app.domain.spending import PackLot
from app.domain.subscriptions import SubscriptionTerms
from app.domain.wallet import Wallet

T0 = datetime(2026, 1, 15, 12, tzinfo=UTC)
CYCLE_END = datetime(2026, 2, 15, 12, tzinfo=UTC)
TERMS = SubscriptionTerms(Plan.STARTER, BillingInterval.MONTHLY, T0, 1000, recorded_at=T0)


def state(subscription: int, lots: tuple[PackLot, ...] = (), **kw: object) -> AccountState:
    pack = sum(lot.remaining for lot in lots)
    wallet = Wallet(subscription, pack, 0, CYCLE_END)
    return AccountState("a1", "s1", wallet, TERMS, lots, **kw)  # type: ignore[arg-type]


def request(cost: int, key: str = "k") -> RunRequest:
    return RunRequest(Tool.ULTRA, cost, None, key, "runGenerator", "fp", "g1")


def test_a_run_takes_subscription_credits_first_then_packs_by_earliest_expiry() -> None:
    lots = (
        PackLot("late", 50, CYCLE_END + timedelta(days=1), T0),
        PackLot("early", 50, CYCLE_END, T0 + timedelta(hours=1)),
    )
    plan = plan_run(state(30, lots), request(100), T0 + timedelta(days=1))
    assert [(p.bucket, p.amount, p.lot_id) for p in plan.postings] == [
        (Bucket.SUBSCRIPTION, -30, None),
        (Bucket.PACK, -50, "early"),
        (Bucket.PACK, -20, "late"),
    ]
    assert [(h.bucket, h.amount, h.lot_id) for h in plan.new_holds] == [
        (Bucket.SUBSCRIPTION, 30, None),
        (Bucket.PACK, 50, "early"),
        (Bucket.PACK, 20, "late"),
    ]
    assert plan.wallet.total == 30
    assert {(lot.lot_id, lot.remaining) for lot in plan.lots} == {("early", 0), ("late", 30)}
    assert plan.idempotency == IdempotencyRecord("k", "runGenerator", "fp", "g1")


def test_a_run_after_a_renewal_records_the_expiry_and_grant_dated_at_the_renewal() -> None:
    lots = (PackLot("p", 40, CYCLE_END, T0),)
    plan = plan_run(state(100, lots), request(10), CYCLE_END + timedelta(hours=1))
    assert [(p.kind, p.bucket, p.amount, p.occurred_at) for p in plan.postings[:3]] == [
        (LedgerKind.EXPIRY, Bucket.SUBSCRIPTION, -100, CYCLE_END),
        (LedgerKind.EXPIRY, Bucket.PACK, -40, CYCLE_END),
        (LedgerKind.GRANT, Bucket.SUBSCRIPTION, 1000, CYCLE_END),
    ]
    assert plan.postings[3].reference_type is ReferenceType.GENERATION
    assert plan.wallet == Wallet(990, 0, 1, datetime(2026, 3, 15, 12, tzinfo=UTC))
    assert plan.new_holds[0].cycle_index == 1


def test_a_run_the_account_cannot_pay_is_refused_whole() -> None:
    with pytest.raises(InsufficientCredits):
        plan_run(state(5), request(10), T0)


def test_a_retry_replays_and_another_request_under_the_key_is_a_conflict() -> None:
    record = IdempotencyRecord("k", "runGenerator", "fp", "first")
    assert plan_run(state(5, idempotency=record), request(10), T0).replay_of == "first"
    other = RunRequest(Tool.TURBO, 20, None, "k", "runGenerator", "other", "g2")
    with pytest.raises(IdempotencyConflict):
        plan_run(state(5, idempotency=record), other, T0)


def test_a_failed_run_held_in_an_ended_cycle_is_refunded_and_expires_at_once() -> None:
    generation = Generation(
        "g1", "a1", Tool.TURBO, 20, GenerationStatus.RUNNING, None, T0, T0, None, None, None
    )
    holds = [OpenHold(7, Bucket.SUBSCRIPTION, 20, "s1", 0)]
    plan = plan_finish(
        state(80), generation, holds, CYCLE_END + timedelta(days=1), Finish.FAIL, detail="x"
    )
    assert [(p.kind, p.amount) for p in plan.postings[-2:]] == [
        (LedgerKind.REFUND, 20),
        (LedgerKind.EXPIRY, -20),
    ]
    assert plan.hold_changes == ((7, HoldStatus.RELEASED),)
    assert plan.wallet.subscription_balance == 1000
