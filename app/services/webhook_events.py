"""Raising outgoing events in the transaction of the change: the rules are the domain's
(:mod:`app.domain.webhooks`); this gathers what they need and hands the rows to the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.aggregate import AccountState, WritePlan, webhook_events
from app.domain.subscriptions import SubscriptionTerms
from app.domain.webhooks import BalanceAlerts, Fact, decide_events, low_threshold
from app.persistence.outbox import EventRow, event_rows
from app.persistence.tables import SubscriptionRow
from app.persistence.unit_of_work import UnitOfWork
from app.services.deps import Services
from app.services.mapping import terms_of
from app.services.wallets import Postings


async def balance_alerts(
    uow: UnitOfWork, services: Services, terms: SubscriptionTerms | None
) -> BalanceAlerts:
    low = low_threshold(
        terms.plan if terms else None,
        terms.monthly_credits if terms else None,
        services.plans.low_balance,
    )
    return BalanceAlerts(low, await services.tariffs.cheapest(uow))


async def plan_events(
    uow: UnitOfWork, services: Services, state: AccountState, plan: WritePlan
) -> list[EventRow]:
    """The outbox rows of a write plan, for ``uow.write(plan, rows)``."""
    alerts = await balance_alerts(uow, services, state.terms)
    events, entries = webhook_events(state, plan, alerts)
    return event_rows(events, entries, plan.now)


async def record_posted(
    uow: UnitOfWork,
    postings: Postings,
    subscription: SubscriptionRow | None,
    services: Services,
    facts: Sequence[Fact] = (),
) -> None:
    """The outbox rows of what ``postings`` wrote through the ORM in this transaction."""
    if not postings.entries and not facts:
        return
    alerts = await balance_alerts(uow, services, terms_of(subscription))
    events = decide_events(
        postings.account_id, postings.before, postings.entries, alerts, facts, postings.now
    )
    if not events:
        return
    await uow.flush()
    ledger_ids = [row.id for row in postings.rows if row.id is not None]
    await uow.add_webhook_events(
        event_rows(events, postings.entries, postings.now), ledger_ids, postings.now
    )
