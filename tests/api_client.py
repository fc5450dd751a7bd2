"""A small GraphQL client for tests, with factories for accounts and subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx

from app.auth import issue_token
from app.clock import FrozenClock

CREATE_ACCOUNT = """
mutation Create($email: String!) { createAccount(input: {email: $email}) { id } }
"""
START_SUBSCRIPTION = """
mutation Start($id: ID!, $plan: Plan!, $interval: BillingInterval!, $at: DateTime) {
  startSubscription(input: {accountId: $id, plan: $plan, interval: $interval, startedAt: $at}) {
    id creditsTotal subscriptionBalance packBalance nextRenewalAt
  }
}
"""
PURCHASE_PACK = """
mutation Buy($packId: ID!, $key: String!) {
  purchasePack(input: {packId: $packId, idempotencyKey: $key}) {
    __typename
    ... on PackPurchased {
      purchase { id packId credits expiresAt purchasedAt }
      account { creditsTotal subscriptionBalance packBalance packExpiresAt }
    }
    ... on Error { message }
    ... on PackNotFound { packId }
    ... on IdempotencyConflict { idempotencyKey }
  }
}
"""
RUN_GENERATOR = """
mutation Run($tool: Tool!, $key: String!, $prompt: String) {
  runGenerator(input: {tool: $tool, idempotencyKey: $key, prompt: $prompt}) {
    __typename
    ... on GeneratorRun {
      generation { id tool cost status createdAt }
      account { creditsTotal subscriptionBalance packBalance }
    }
    ... on InsufficientCredits { required available }
    ... on Error { message }
  }
}
"""
BALANCES = """
query { me { id creditsTotal subscriptionBalance packBalance packExpiresAt nextRenewalAt
  subscription { plan interval status startedAt canceledAt endsAt } } }
"""


class Api:
    def __init__(
        self, client: httpx.AsyncClient, secret: str, clock: FrozenClock, app: Any = None
    ) -> None:
        self.client = client
        self.secret = secret
        self.clock = clock
        self.app = app  # the ASGI app the client talks to, where a test needs it

    def token(self, account_id: str | None = None, *, ttl: timedelta = timedelta(hours=1)) -> str:
        role: Literal["user", "service"] = "user" if account_id else "service"
        return issue_token(
            self.secret, role=role, account_id=account_id, now=self.clock.now(), ttl=ttl
        )

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The ``data`` of a request that must not fail."""
        body = await self.post(query, variables, token=token)
        assert "errors" not in body, body["errors"]
        result: dict[str, Any] = body["data"]
        return result

    async def as_service(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        return await self.data(query, variables, token=self.token())

    async def as_user(
        self, account_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> Any:
        return await self.data(query, variables, token=self.token(account_id))

    # factories -----------------------------------------------------------------------------

    async def create_account(self, email: str | None = None) -> str:
        email = email or f"user-{uuid.uuid4().hex}@example.com"
        data = await self.as_service(CREATE_ACCOUNT, {"email": email})
        return str(data["createAccount"]["id"])

    async def subscribe(
        self,
        account_id: str,
        plan: str = "STARTER",
        interval: str = "MONTHLY",
        started_at: datetime | None = None,
    ) -> dict[str, Any]:
        variables = {
            "id": account_id,
            "plan": plan,
            "interval": interval,
            "at": started_at.isoformat() if started_at else None,
        }
        data = await self.as_service(START_SUBSCRIPTION, variables)
        result: dict[str, Any] = data["startSubscription"]
        return result

    async def subscribed_account(self, plan: str = "STARTER", interval: str = "MONTHLY") -> str:
        account_id = await self.create_account()
        await self.subscribe(account_id, plan, interval)
        return account_id

    async def buy(self, account_id: str, pack_id: str = "pack-500", key: str = "buy-1") -> Any:
        data = await self.as_user(account_id, PURCHASE_PACK, {"packId": pack_id, "key": key})
        return data["purchasePack"]

    async def run(
        self, account_id: str, tool: str = "TURBO", key: str = "run-1", prompt: str | None = None
    ) -> Any:
        variables = {"tool": tool, "key": key, "prompt": prompt}
        data = await self.as_user(account_id, RUN_GENERATOR, variables)
        return data["runGenerator"]

    async def balances(self, account_id: str) -> Any:
        return (await self.as_user(account_id, BALANCES))["me"]


CLAIM = """
mutation Claim($limit: Int!, $tools: [Tool!]) {
  claimGenerations(limit: $limit, tools: $tools) { id accountId tool cost status prompt startedAt }
}
"""
COMPLETE = """
mutation Complete($id: ID!, $url: String!) {
  completeGeneration(id: $id, resultUrl: $url) {
    __typename
    ... on GenerationCompleted {
      generation { id status resultUrl failureReason finishedAt }
      account { creditsTotal subscriptionBalance packBalance }
    }
    ... on InvalidGenerationTransition { message generation { id status } }
    ... on GenerationNotFound { message generationId }
  }
}
"""
FAIL = """
mutation Fail($id: ID!, $reason: String!) {
  failGeneration(id: $id, reason: $reason) {
    __typename
    ... on GenerationFailed {
      generation { id status resultUrl failureReason finishedAt }
      account { creditsTotal subscriptionBalance packBalance }
    }
    ... on InvalidGenerationTransition { message generation { id status } }
    ... on GenerationNotFound { message generationId }
  }
}
"""


class Worker:
    """A generation worker: claims, completes and fails jobs with a service token."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def claim(self, limit: int = 10, tools: list[str] | None = None) -> list[Any]:
        data = await self.api.as_service(CLAIM, {"limit": limit, "tools": tools})
        claimed: list[Any] = data["claimGenerations"]
        return claimed

    async def complete(self, generation_id: str, url: str = "https://cdn.example/m.glb") -> Any:
        data = await self.api.as_service(COMPLETE, {"id": generation_id, "url": url})
        return data["completeGeneration"]

    async def fail(self, generation_id: str, reason: str = "GPU out of memory") -> Any:
        data = await self.api.as_service(FAIL, {"id": generation_id, "reason": reason})
        return data["failGeneration"]
