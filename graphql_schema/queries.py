"""Query resolvers: read input, call one service or loader, map with ``from_domain``."""

from __future__ import annotations

import strawberry

from app.domain.errors import GenerationNotFound, PurchaseNotFound
from app.services import catalog, history
from graphql_schema.context import Info
from graphql_schema.engine.limits import checked_list
from graphql_schema.errors import ApiError
from graphql_schema.types import (
    Account,
    CreditPack,
    Generation,
    PackPurchase,
    PlanInfo,
    Tariff,
)


@strawberry.type
class Query:
    @strawberry.field(description="The caller's account (user token).")
    async def me(self, info: Info) -> Account:
        account_id = info.context.require_user()
        view = await info.context.accounts.load(account_id)
        if view is None:
            raise ApiError("The token's account does not exist.", "NOT_FOUND")
        return Account.from_domain(view)

    @strawberry.field(description="Own account for a user token; any for a service token.")
    async def account(self, info: Info, id: strawberry.ID) -> Account | None:
        info.context.require_access(str(id))
        view = await info.context.accounts.load(str(id))
        return Account.from_domain(view) if view else None

    @strawberry.field(description="Service token; at most 100 ids (a setting), null if absent.")
    async def accounts(self, info: Info, ids: list[strawberry.ID]) -> list[Account | None]:
        info.context.require_service()
        checked_list(ids, info.context.lists.max_ids, "ids")
        views = await info.context.accounts.load_many([str(i) for i in ids])
        return [Account.from_domain(v) if v else None for v in views]

    @strawberry.field(description="One run: the caller's own (user token), or any (service).")
    async def generation(self, info: Info, id: strawberry.ID) -> Generation | None:
        principal = info.context.require_principal()
        try:
            generation = await history.get_generation(str(id), info.context.services)
        except GenerationNotFound:
            return None
        # Someone else's run reads as absent: ids of other accounts' runs reveal nothing.
        if not principal.may_act_for(generation.account_id):
            return None
        return Generation.from_domain(generation)

    @strawberry.field(description="One pack purchase: the caller's own (user), or any (service).")
    async def purchase(self, info: Info, id: strawberry.ID) -> PackPurchase | None:
        principal = info.context.require_principal()
        owner = None if principal.is_service else principal.account_id
        try:
            purchase = await history.get_purchase(str(id), owner, info.context.services)
        except PurchaseNotFound:
            return None
        return PackPurchase.from_domain(purchase)

    @strawberry.field(description="Credits each tool costs per run. Public.")
    async def tariffs(self, info: Info) -> list[Tariff]:
        return [Tariff.from_domain(t) for t in await catalog.list_tariffs(info.context.services)]

    @strawberry.field(description="Plans and their monthly credits. Public.")
    def plans(self, info: Info) -> list[PlanInfo]:
        return [
            PlanInfo(plan=plan, monthly_credits=credits, max_active_generations=limit)
            for plan, credits, limit in catalog.list_plans(info.context.services)
        ]

    @strawberry.field(description="Credit packs on sale. Public.")
    async def credit_packs(self, info: Info) -> list[CreditPack]:
        return [CreditPack.from_domain(p) for p in await catalog.list_packs(info.context.services)]
