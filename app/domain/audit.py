"""Reconciliation: every balance explained by its entries, every hold by its generation, and
no credits alive past their expiry in the cycle the account has recorded (bonus lots: past
their own date, at an instant the account has recorded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.domain.cycles import cycle_end, cycle_start
from app.domain.holds import RecordedCycle, lot_is_live
from app.domain.subscriptions import SubscriptionTerms


@dataclass(frozen=True, slots=True)
class AccountFacts:
    account_id: str
    subscription_balance: int
    pack_balance: int
    ledger_subscription: int
    ledger_pack: int
    lots_remaining: int
    cycle_index: int | None = None
    cycle_ends_at: datetime | None = None
    # The account's current subscription (None: it never had one).
    subscription_id: str | None = None
    terms: SubscriptionTerms | None = None
    bonus_balance: int = 0
    ledger_bonus: int = 0
    bonus_remaining: int = 0


@dataclass(frozen=True, slots=True)
class BonusLotFacts:
    """One adjustment of support: a bonus lot (positive amount) or a correction."""

    adjustment_id: str
    account_id: str
    amount: int
    remaining: int
    # The sum of the ledger entries naming it as their lot (a bonus's own bucket entries).
    ledger_total: int
    expires_at: datetime | None = None
    # The latest instant its account's records speak of (None: nothing timed).
    recorded_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class LotFacts:
    lot_id: str
    account_id: str
    remaining: int
    ledger_total: int
    expires_at: datetime | None = None
    # The cycle its account has recorded: a lot holding credits must still be live in it.
    account_cycle: RecordedCycle | None = None


@dataclass(frozen=True, slots=True)
class GenerationFacts:
    generation_id: str
    account_id: str
    status: str
    cost: int
    holds_by_status: dict[str, int] = field(default_factory=dict)
    spent: int = 0  # sum of SPEND entries (negative)
    refunded: int = 0  # sum of REFUND entries


def account_findings(facts: AccountFacts) -> list[str]:
    found = []
    who = f"account {facts.account_id}"
    if facts.subscription_balance < 0 or facts.pack_balance < 0 or facts.bonus_balance < 0:
        found.append(f"{who}: negative balance")
    if facts.subscription_balance != facts.ledger_subscription:
        found.append(
            f"{who}: subscription balance {facts.subscription_balance} but ledger says "
            f"{facts.ledger_subscription}"
        )
    if facts.pack_balance != facts.ledger_pack:
        found.append(
            f"{who}: pack balance {facts.pack_balance} but ledger says {facts.ledger_pack}"
        )
    if facts.pack_balance != facts.lots_remaining:
        found.append(
            f"{who}: pack balance {facts.pack_balance} but its packs hold {facts.lots_remaining}"
        )
    if facts.bonus_balance != facts.ledger_bonus:
        found.append(
            f"{who}: bonus balance {facts.bonus_balance} but ledger says {facts.ledger_bonus}"
        )
    if facts.bonus_balance != facts.bonus_remaining:
        found.append(
            f"{who}: bonus balance {facts.bonus_balance} but its bonus lots hold "
            f"{facts.bonus_remaining}"
        )
    return found + cycle_findings(facts)


def bonus_lot_findings(facts: BonusLotFacts) -> list[str]:
    """A bonus lot holds what its entries say, and nothing once a recorded instant passed its
    date (every write records the bonus expiries due at its instant)."""
    who = f"adjustment {facts.adjustment_id}"
    if facts.remaining < 0:
        return [f"{who}: negative remaining {facts.remaining}"]
    if facts.amount < 0:
        return [f"{who}: a correction holds {facts.remaining} credits"] if facts.remaining else []
    found = []
    if facts.remaining != facts.ledger_total:
        found.append(f"{who}: {facts.remaining} left but ledger says {facts.ledger_total}")
    if facts.expires_at is None:
        found.append(f"{who}: a bonus without an expiry")
    elif (
        facts.remaining > 0
        and facts.recorded_until is not None
        and facts.expires_at < facts.recorded_until
    ):
        found.append(
            f"{who}: holds {facts.remaining} bonus credits past its expiry {facts.expires_at}; "
            f"its account recorded {facts.recorded_until}"
        )
    return found


def cycle_findings(facts: AccountFacts) -> list[str]:
    """Subscription credits only in a cycle the plan really has, and only before it ends."""
    who = f"account {facts.account_id}"
    terms, k = facts.terms, facts.cycle_index
    if k is None or terms is None:
        if facts.subscription_balance:
            return [
                f"{who}: subscription bucket holds {facts.subscription_balance} credits "
                "but the account is in no cycle"
            ]
        return []
    found = []
    if facts.cycle_ends_at != cycle_end(terms.started_at, k):
        found.append(
            f"{who}: cycle {k} recorded to end at {facts.cycle_ends_at}, but its plan's "
            f"cycle {k} ends at {cycle_end(terms.started_at, k)}"
        )
    ends = terms.ends_at()
    if ends is not None and cycle_start(terms.started_at, k) >= ends:
        found.append(
            f"{who}: subscription {facts.subscription_id} ended at {ends}, but its bucket "
            f"holds {facts.subscription_balance} credits of cycle {k}, after its end"
        )
    return found


def lot_findings(facts: LotFacts) -> list[str]:
    found = _lot_ledger_findings(facts)
    cycle = facts.account_cycle
    if (
        facts.remaining > 0
        and facts.expires_at is not None
        and cycle is not None
        and not lot_is_live(facts.expires_at, cycle)
    ):
        found.append(
            f"pack purchase {facts.lot_id}: holds {facts.remaining} credits past its expiry "
            f"{facts.expires_at}; its account is in a later cycle (ending {cycle.ends_at})"
        )
    return found


def _lot_ledger_findings(facts: LotFacts) -> list[str]:
    if facts.remaining < 0:
        return [f"pack purchase {facts.lot_id}: negative remaining {facts.remaining}"]
    if facts.remaining != facts.ledger_total:
        return [
            f"pack purchase {facts.lot_id}: {facts.remaining} left but ledger says "
            f"{facts.ledger_total}"
        ]
    return []


# Which hold status each generation status must have all of its cost in.
EXPECTED_HOLDS = {
    "QUEUED": "OPEN",
    "RUNNING": "OPEN",
    "SUCCEEDED": "SETTLED",
    "FAILED": "RELEASED",
    "CANCELED": "RELEASED",
}


def generation_findings(facts: GenerationFacts) -> list[str]:
    who = f"generation {facts.generation_id}"
    found = []
    expected = EXPECTED_HOLDS.get(facts.status)
    if expected is None:
        return [f"{who}: unknown status {facts.status}"]
    if any(amount <= 0 for amount in facts.holds_by_status.values()):
        found.append(f"{who}: a hold is not positive")
    if facts.holds_by_status != {expected: facts.cost}:
        found.append(
            f"{who} is {facts.status} (cost {facts.cost}) but its holds are "
            f"{facts.holds_by_status or 'missing'}"
        )
    if facts.spent != -facts.cost:
        found.append(f"{who}: charged {-facts.spent} in the ledger, cost {facts.cost}")
    expected_refund = facts.cost if facts.status in ("FAILED", "CANCELED") else 0
    if facts.refunded != expected_refund:
        found.append(f"{who}: refunded {facts.refunded}, expected {expected_refund}")
    return found
