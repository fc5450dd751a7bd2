"""Subscriptions over graphql-transport-ws: the caller's credits and generations, live.

A subscription starts with a fresh read through a service. After each event, all feeds of
the account in this process share one read made after that event (``Hub.shared_read``), so
a subscriber sees what a query would see then, and 100 feeds of one account cost one read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable

import strawberry

from app.domain.accounts import AccountView
from app.domain.deadlines import next_change_at
from app.domain.model import GenerationStatus
from app.domain.purchases import PurchaseStatus
from app.domain.records import Generation as GenerationView
from app.domain.records import PackPurchase as PurchaseView
from app.services import accounts, history, live
from graphql_schema.context import Info
from graphql_schema.errors import or_error
from graphql_schema.types import Account, Generation, PackPurchase

FINAL_STATUSES = frozenset(
    {GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELED}
)
# A purchase stops changing once it ended unpaid or its payment was reversed for good.
FINAL_PURCHASE_STATUSES = frozenset(
    {PurchaseStatus.EXPIRED, PurchaseStatus.FAILED, PurchaseStatus.REFUNDED, PurchaseStatus.REVOKED}
)


@strawberry.type(description="Live updates over graphql-transport-ws.")
class LiveUpdates:
    @strawberry.subscription(
        description=(
            "The caller's account now, then again after every committed change to it and "
            "when a renewal or expiry takes effect. User token in connection_init; ends "
            "when the token expires."
        )
    )
    async def credits_changed(self, info: Info) -> AsyncGenerator[Account, None]:
        context = info.context
        account_id = context.require_user()
        services = context.services
        feeds = context.require_feeds()

        async def read() -> AccountView:
            return await or_error(accounts.get_account(account_id, services))

        with feeds.open(account_id, "creditsChanged") as feed:
            last = None
            first = True
            while context.still_authorized():
                context.renew_loaders()
                view = await (read() if first else feeds.shared_read(account_id, "account", read))
                first = False
                feed.wake(next_change_at(view, services.clock.now()))
                if view != last:
                    yield Account.from_domain(view)
                    last = view
                await feed.changes()

    @strawberry.subscription(
        description=(
            "With an id: that generation now, then at each change until it succeeds or "
            "fails. Without: every change to the caller's generations. User token; ends "
            "when it expires."
        )
    )
    async def generation_updated(
        self, info: Info, id: strawberry.ID | None = None
    ) -> AsyncGenerator[Generation, None]:
        context = info.context
        account_id = context.require_user()
        services = context.services
        feeds = context.require_feeds()

        def shared(generation_id: str) -> Awaitable[GenerationView]:
            async def read() -> GenerationView:
                return await or_error(live.own_generation(account_id, generation_id, services))

            return feeds.shared_read(account_id, ("generation", generation_id), read)

        with feeds.open(account_id, "generationUpdated") as feed:
            if id is None:
                while True:
                    changes = await feed.changes()
                    if not context.still_authorized():
                        return
                    context.renew_loaders()
                    for generation_id in changes.generations:
                        generation = await shared(generation_id)
                        yield Generation.from_domain(generation)
            generation = await or_error(live.own_generation(account_id, str(id), services))
            yield Generation.from_domain(generation)
            while generation.status not in FINAL_STATUSES:
                changes = await feed.changes()
                if not context.still_authorized():
                    return
                if str(id) not in changes.generations and not changes.resync:
                    continue
                context.renew_loaders()
                latest = await shared(str(id))
                if latest != generation:
                    yield Generation.from_domain(latest)
                    generation = latest

    @strawberry.subscription(
        description="One pack purchase now, then at each status change (the moment it is "
        "credited, refunded, ...) until it is final. User token (own purchase)."
    )
    async def purchase_updated(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[PackPurchase, None]:
        context = info.context
        account_id = context.require_user()
        services = context.services
        feeds = context.require_feeds()

        async def read() -> PurchaseView:
            return await or_error(history.get_purchase(str(id), account_id, services))

        with feeds.open(account_id, "purchaseUpdated") as feed:
            purchase = await read()
            yield PackPurchase.from_domain(purchase)
            while purchase.status not in FINAL_PURCHASE_STATUSES:
                await feed.changes()
                if not context.still_authorized():
                    return
                latest = await feeds.shared_read(account_id, ("purchase", str(id)), read)
                if latest != purchase:
                    yield PackPurchase.from_domain(latest)
                    purchase = latest
