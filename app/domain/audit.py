"""Reconciliation: every balance explained by its entries, every hold by its generation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AccountFacts:
    account_id: str
    subscription_balance: int
    pack_balance: int
    ledger_subscription: int
    ledger_pack: int
    lots_remaining: int


@dataclass(frozen=True, slots=True)
class LotFacts:
    lot_id: str
    account_id: str
    remaining: int
    ledger_total: int


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
    if facts.subscription_balance < 0 or facts.pack_balance < 0:
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
    return found


def lot_findings(facts: LotFacts) -> list[str]:
    if facts.remaining < 0:
        return [f"pack purchase {facts.lot_id}: negative remaining {facts.remaining}"]
    if facts.remaining != facts.ledger_total:
        return [
            f"pack purchase {facts.lot_id}: {facts.remaining} left but ledger says "
            f"{facts.ledger_total}"
        ]
    return []


# Which hold status each generation status must have all of its cost in.
EXPECTED_HOLDS = {"QUEUED": "OPEN", "RUNNING": "OPEN", "SUCCEEDED": "SETTLED", "FAILED": "RELEASED"}


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
    expected_refund = facts.cost if facts.status == "FAILED" else 0
    if facts.refunded != expected_refund:
        found.append(f"{who}: refunded {facts.refunded}, expected {expected_refund}")
    return found
