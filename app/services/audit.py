"""`creditgate audit`: prove that balances, packs, holds and the ledger agree."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from app.domain.audit import (
    account_findings,
    bonus_lot_findings,
    generation_findings,
    lot_findings,
)
from app.domain.purchase_audit import purchase_findings, shared_payment_findings
from app.domain.wallet import Wallet, recorded_until
from app.persistence import audit_queries
from app.services.deps import Services
from app.services.mapping import terms_of


@dataclass(frozen=True, slots=True)
class AuditReport:
    accounts: int
    pack_purchases: int
    generations: int
    adjustments: int
    ledger_entries: int
    open_holds: int
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        verdict = "OK" if self.ok else f"{len(self.findings)} MISMATCHES"
        return (
            f"audit {verdict}: {self.accounts} accounts, {self.pack_purchases} pack purchases, "
            f"{self.generations} generations ({self.open_holds} with open holds), "
            f"{self.adjustments} adjustments, {self.ledger_entries} ledger entries"
        )


async def run_audit(services: Services) -> AuditReport:
    async with services.db.reading() as uow:
        session = uow.session
        await audit_queries.snapshot_isolation(session)
        accounts = await audit_queries.account_facts(session)
        subscriptions = await audit_queries.current_subscriptions(session)
        lots = await audit_queries.lot_facts(session)
        bonus_lots = await audit_queries.bonus_lot_facts(session)
        generations = await audit_queries.generation_facts(session)
        entries = await audit_queries.ledger_entry_count(session)
        purchases = await audit_queries.purchase_facts(session)
        shared = await audit_queries.shared_payments(session)
    # Cycle checks need each account's plan terms, mapped in the one place rows become terms.
    accounts = [replace(a, terms=terms_of(subscriptions.get(a.account_id))) for a in accounts]
    findings = [f for a in accounts for f in account_findings(a)]
    findings += [f for lot in lots for f in lot_findings(lot)]
    # A bonus lot is judged against the latest instant its account's records speak of.
    recorded = {
        a.account_id: recorded_until(
            Wallet(a.subscription_balance, a.pack_balance, a.cycle_index, a.cycle_ends_at),
            a.terms,
        )
        for a in accounts
    }
    findings += [
        f
        for lot in bonus_lots
        for f in bonus_lot_findings(replace(lot, recorded_until=recorded.get(lot.account_id)))
    ]
    findings += [f for g in generations for f in generation_findings(g)]
    findings += [f for p in purchases for f in purchase_findings(p)]
    findings += shared_payment_findings(shared)
    return AuditReport(
        accounts=len(accounts),
        pack_purchases=len(lots),
        generations=len(generations),
        adjustments=len(bonus_lots),
        ledger_entries=entries,
        open_holds=sum(1 for g in generations if "OPEN" in g.holds_by_status),
        findings=findings,
    )
