"""Support's credit adjustments as domain rules: bonus lots, their spend order and expiry,
corrections in spend order, and the input rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.accounts import account_view
from app.domain.adjustments import (
    MAX_CREDITS,
    bonus_at,
    validate_amount,
    validate_expiry,
    validate_reason,
)
from app.domain.aggregate import (
    AccountState,
    AdjustmentRequest,
    IdempotencyRecord,
    OpenHold,
    RunRequest,
    plan_adjustment,
    plan_finish,
    plan_renewals,
    plan_run,
)
from app.domain.deadlines import next_change_at
from app.domain.errors import IdempotencyConflict, InsufficientCredits, InvalidInput
from app.domain.generations import Finish
from app.domain.model import (
    BillingInterval,
    Bucket,
    GenerationStatus,
    LedgerKind,
    Plan,
    ReferenceType,
    Tool,
)
from app.domain.records import Generation
from app.domain.spending import PackLot, allocate
from app.domain.subscriptions import SubscriptionTerms
from app.domain.wallet import Wallet

T0 = datetime(2026, 1, 15, 12, tzinfo=UTC)
CYCLE_END = datetime(2026, 2, 15, 12, tzinfo=UTC)
NEXT_END = datetime(2026, 3, 15, 12, tzinfo=UTC)
TERMS = SubscriptionTerms(Plan.STARTER, BillingInterval.MONTHLY, T0, 1000, recorded_at=T0)


def state(
    subscription: int,
    packs: tuple[PackLot, ...] = (),
    bonus: tuple[PackLot, ...] = (),
    *,
    terms: SubscriptionTerms | None = TERMS,
    idempotency: IdempotencyRecord | None = None,
) -> AccountState:
    pack_balance = sum(lot.remaining for lot in packs)
    bonus_balance = sum(lot.remaining for lot in bonus)
    wallet = (
        Wallet(subscription, pack_balance, 0, CYCLE_END, bonus_balance)
        if terms
        else Wallet(subscription, pack_balance, None, None, bonus_balance)
    )
    return AccountState(
        "a1",
        "s1" if terms else None,
        wallet,
        terms,
        packs,
        idempotency,
        bonus_lots=bonus,
    )


def adjustment(
    amount: int, expires_at: datetime | None = None, key: str = "k", fp: str = "fp"
) -> AdjustmentRequest:
    return AdjustmentRequest(
        amount, "outage on Dec 1", "support:ada", expires_at, key, "adjustCredits", fp, "adj"
    )


def run(cost: int) -> RunRequest:
    return RunRequest(Tool.ULTRA, cost, None, "run", "runGenerator", "fp", "g1")


def test_a_positive_adjustment_is_a_bonus_lot_in_one_adjustment_entry() -> None:
    expires = T0 + timedelta(days=60)
    plan = plan_adjustment(state(100), adjustment(250, expires), T0 + timedelta(days=1))
    assert [
        (p.kind, p.bucket, p.amount, p.balance_after, p.lot_id, p.reference_type)
        for p in plan.postings
    ] == [(LedgerKind.ADJUSTMENT, Bucket.BONUS, 250, 250, "adj", ReferenceType.ADJUSTMENT)]
    assert (plan.postings[0].reason, plan.postings[0].actor) == ("outage on Dec 1", "support:ada")
    assert plan.wallet.bonus_balance == 250
    assert plan.wallet.total == 350
    assert plan.new_adjustment is not None
    assert plan.new_adjustment.expires_at == expires
    assert [(lot.lot_id, lot.remaining) for lot in plan.bonus_lots] == [("adj", 250)]


def test_a_bonus_without_a_date_expires_at_the_next_renewal_like_packs() -> None:
    plan = plan_adjustment(state(100), adjustment(50), T0 + timedelta(days=3))
    assert plan.new_adjustment is not None
    assert plan.new_adjustment.expires_at == CYCLE_END


def test_a_bonus_without_a_date_needs_a_cycle_to_expire_with() -> None:
    with pytest.raises(InvalidInput) as refused:
        plan_adjustment(state(0, terms=None), adjustment(50), T0)
    assert refused.value.field == "expiresAt"


def test_a_bonus_may_be_granted_without_a_subscription_when_it_has_a_date() -> None:
    plan = plan_adjustment(state(0, terms=None), adjustment(50, T0 + timedelta(days=2)), T0)
    assert plan.wallet.bonus_balance == 50


def test_a_bonus_dated_in_the_past_or_now_is_refused() -> None:
    for expires in (T0, T0 - timedelta(seconds=1)):
        with pytest.raises(InvalidInput):
            plan_adjustment(state(10), adjustment(50, expires), T0)


def test_bonus_credits_are_spent_after_subscription_credits_and_before_packs() -> None:
    packs = (PackLot("pack", 100, CYCLE_END, T0),)
    bonus = (
        PackLot("bonus-late", 30, NEXT_END, T0),
        PackLot("bonus-early", 20, CYCLE_END + timedelta(days=3), T0 + timedelta(hours=1)),
    )
    plan = plan_run(state(10, packs, bonus), run(80), T0 + timedelta(days=1))
    assert [(p.bucket, p.amount, p.lot_id) for p in plan.postings] == [
        (Bucket.SUBSCRIPTION, -10, None),
        (Bucket.BONUS, -20, "bonus-early"),
        (Bucket.BONUS, -30, "bonus-late"),
        (Bucket.PACK, -20, "pack"),
    ]
    assert [(h.bucket, h.lot_id) for h in plan.new_holds][1:3] == [
        (Bucket.BONUS, "bonus-early"),
        (Bucket.BONUS, "bonus-late"),
    ]
    assert plan.wallet.bonus_balance == 0


def test_the_spend_order_puts_bonus_lots_between_the_subscription_and_packs() -> None:
    portions = allocate(5, 2, [PackLot("p", 10, CYCLE_END, T0)], [PackLot("b", 2, CYCLE_END, T0)])
    assert [(p.bucket, p.amount) for p in portions] == [
        (Bucket.SUBSCRIPTION, 2),
        (Bucket.BONUS, 2),
        (Bucket.PACK, 1),
    ]


def test_a_bonus_expires_at_its_date_in_the_first_write_after_it() -> None:
    expires = T0 + timedelta(days=10)
    bonus = (PackLot("b", 70, expires, T0),)
    plan = plan_renewals(state(100, bonus=bonus), expires + timedelta(hours=1))
    assert [(p.kind, p.bucket, p.amount, p.occurred_at, p.lot_id) for p in plan.postings] == [
        (LedgerKind.EXPIRY, Bucket.BONUS, -70, expires, "b")
    ]
    assert plan.wallet.bonus_balance == 0
    assert plan.wallet.subscription_balance == 100  # no renewal was due


def test_a_bonus_dated_at_the_renewal_expires_with_it_before_the_grant() -> None:
    bonus = (PackLot("b", 70, CYCLE_END, T0),)
    plan = plan_renewals(state(100, bonus=bonus), CYCLE_END + timedelta(minutes=1))
    assert [(p.kind, p.bucket, p.amount, p.occurred_at) for p in plan.postings] == [
        (LedgerKind.EXPIRY, Bucket.BONUS, -70, CYCLE_END),
        (LedgerKind.EXPIRY, Bucket.SUBSCRIPTION, -100, CYCLE_END),
        (LedgerKind.GRANT, Bucket.SUBSCRIPTION, 1000, CYCLE_END),
    ]


def test_a_bonus_dated_beyond_the_renewal_outlives_it() -> None:
    bonus = (PackLot("b", 70, NEXT_END, T0),)
    plan = plan_renewals(state(100, bonus=bonus), CYCLE_END + timedelta(minutes=1))
    assert all(p.bucket is not Bucket.BONUS for p in plan.postings)
    assert plan.wallet.bonus_balance == 70


def test_reads_count_a_bonus_until_its_date_and_not_after() -> None:
    lots = [PackLot("a", 5, T0 + timedelta(days=1), T0), PackLot("b", 7, NEXT_END, T0)]
    assert bonus_at(lots, T0) == (12, T0 + timedelta(days=1))
    assert bonus_at(lots, T0 + timedelta(days=1)) == (7, NEXT_END)
    view = account_view(
        account_id="a1",
        email="a@example.com",
        created_at=T0,
        wallet=Wallet(100, 0, 0, CYCLE_END, 12),
        subscription_id="s1",
        terms=TERMS,
        now=T0 + timedelta(days=2),
        bonus_lots=lots,
    )
    assert (view.bonus_balance, view.credits_total, view.bonus_expires_at) == (7, 107, NEXT_END)


def test_held_bonus_credits_go_back_to_their_lot_while_it_lives() -> None:
    generation = Generation(
        "g1", "a1", Tool.TURBO, 20, GenerationStatus.RUNNING, None, T0, T0, None, None, None
    )
    bonus = (PackLot("b", 0, T0 + timedelta(days=5), T0),)
    holds = [OpenHold(7, Bucket.BONUS, 20, lot_id="b")]
    plan = plan_finish(
        state(0, bonus=bonus), generation, holds, T0 + timedelta(days=1), Finish.FAIL, detail="x"
    )
    assert [(p.kind, p.bucket, p.amount) for p in plan.postings] == [
        (LedgerKind.REFUND, Bucket.BONUS, 20)
    ]
    assert plan.wallet.bonus_balance == 20


def test_held_bonus_credits_of_a_bonus_that_ended_meanwhile_come_back_and_expire() -> None:
    generation = Generation(
        "g1", "a1", Tool.TURBO, 20, GenerationStatus.RUNNING, None, T0, T0, None, None, None
    )
    expires = T0 + timedelta(days=5)
    bonus = (PackLot("b", 0, expires, T0),)
    holds = [OpenHold(7, Bucket.BONUS, 20, lot_id="b")]
    plan = plan_finish(state(0, bonus=bonus), generation, holds, expires, Finish.FAIL, detail="x")
    assert [(p.kind, p.bucket, p.amount) for p in plan.postings] == [
        (LedgerKind.REFUND, Bucket.BONUS, 20),
        (LedgerKind.EXPIRY, Bucket.BONUS, -20),
    ]
    assert plan.wallet.bonus_balance == 0


def test_a_correction_is_taken_in_spend_order_one_entry_per_bucket_and_lot() -> None:
    packs = (PackLot("pack", 100, CYCLE_END, T0),)
    bonus = (PackLot("bonus", 30, NEXT_END, T0),)
    plan = plan_adjustment(state(40, packs, bonus), adjustment(-90), T0 + timedelta(days=1))
    assert [(p.kind, p.bucket, p.amount, p.lot_id, p.reference_id) for p in plan.postings] == [
        (LedgerKind.ADJUSTMENT, Bucket.SUBSCRIPTION, -40, None, "adj"),
        (LedgerKind.ADJUSTMENT, Bucket.BONUS, -30, "bonus", "adj"),
        (LedgerKind.ADJUSTMENT, Bucket.PACK, -20, "pack", "adj"),
    ]
    assert {p.reason for p in plan.postings} == {"outage on Dec 1"}
    assert plan.wallet == Wallet(0, 80, 0, CYCLE_END, 0)
    assert plan.new_adjustment is not None
    assert (plan.new_adjustment.amount, plan.new_adjustment.expires_at) == (-90, None)


def test_a_correction_beyond_what_the_account_holds_is_refused_whole() -> None:
    bonus = (PackLot("bonus", 30, NEXT_END, T0),)
    with pytest.raises(InsufficientCredits) as refused:
        plan_adjustment(state(40, bonus=bonus), adjustment(-71), T0 + timedelta(days=1))
    assert (refused.value.required, refused.value.available) == (71, 70)


def test_a_correction_after_a_renewal_takes_from_the_new_cycle() -> None:
    plan = plan_adjustment(state(5), adjustment(-600), CYCLE_END + timedelta(hours=1))
    assert [(p.kind, p.amount) for p in plan.postings] == [
        (LedgerKind.EXPIRY, -5),
        (LedgerKind.GRANT, 1000),
        (LedgerKind.ADJUSTMENT, -600),
    ]
    assert plan.wallet.subscription_balance == 400


def test_an_adjustment_retried_replays_and_another_one_under_its_key_conflicts() -> None:
    record = IdempotencyRecord("k", "adjustCredits", "fp", "first")
    plan = plan_adjustment(state(5, idempotency=record), adjustment(10), T0)
    assert plan.replay_of == "first"
    assert plan.postings == ()
    with pytest.raises(IdempotencyConflict):
        plan_adjustment(state(5, idempotency=record), adjustment(11, fp="other"), T0)


def test_a_bonus_may_not_take_the_total_beyond_a_graphql_int() -> None:
    with pytest.raises(InvalidInput) as refused:
        plan_adjustment(state(10), adjustment(MAX_CREDITS - 9), T0)
    assert refused.value.field == "amount"


@pytest.mark.parametrize("amount", [0, MAX_CREDITS + 1, -MAX_CREDITS - 1])
def test_an_amount_of_zero_or_beyond_an_int_is_refused(amount: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_amount(amount)
    assert refused.value.field == "amount"


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_reason_is_one_to_five_hundred_characters(reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_reason(reason)
    assert refused.value.field == "reason"
    assert validate_reason("x" * 500) == "x" * 500


def test_only_a_bonus_has_an_expiry_and_it_needs_an_offset() -> None:
    with pytest.raises(InvalidInput):
        validate_expiry(-5, CYCLE_END)
    with pytest.raises(InvalidInput):
        validate_expiry(5, datetime(2026, 3, 1))
    eastern = datetime.fromisoformat("2026-03-01T07:00:00-05:00")
    assert validate_expiry(5, eastern) == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_subscribers_are_woken_when_a_bonus_expires() -> None:
    expires = T0 + timedelta(days=3)
    view = account_view(
        account_id="a1",
        email="a@example.com",
        created_at=T0,
        wallet=Wallet(100, 0, 0, CYCLE_END, 5),
        subscription_id="s1",
        terms=TERMS,
        now=T0,
        bonus_lots=[PackLot("b", 5, expires, T0)],
    )
    assert next_change_at(view, T0) == expires
