"""Planned mutations answer what graphql-core answers with the fast paths off.

A mutation cannot be answered twice on one database state, so each case runs once on an
account of its own through the gateway (plans on) and once on another, alike, through an
app on the same database with the fast paths off; the answers must be the same but for
the accounts' ids.
"""

from __future__ import annotations

from typing import Any

import pytest

from graphql_schema.engine.plans import MutationPlan, Replay
from tests.api_client import Api
from tests.conftest import ApiFactory

RUN = """mutation Run($key: String!, $tool: Tool!) {
  runGenerator(input: {tool: $tool, idempotencyKey: $key}) {
    __typename
    ... on GeneratorRun { generation { tool cost status createdAt } account { creditsTotal
      subscriptionBalance packBalance subscription { plan status } } }
    ... on Error { message }
    ... on IdempotencyConflict { idempotencyKey }
  }
}"""
FRAGMENTS = """mutation($key: String!) {
  r: runGenerator(input: {tool: TURBO, idempotencyKey: $key}) { ...Outcome }
}
fragment Outcome on RunGeneratorResult { __typename ... on GeneratorRun { account { ...B } } }
fragment B on Account { creditsTotal }"""
BUY = """mutation Buy($key: String!) {
  purchasePack(input: {packId: "pack-500", idempotencyKey: $key}) {
    __typename ... on PackPurchased { purchase { packId credits } account { packBalance } }
    ... on PaymentPending { message purchase { status } } ... on Error { message }
  }
}"""
CREATE = """mutation($email: String!) { createAccount(input: {email: $email}) {
  creditsTotal subscription { plan } } }"""

# (name, document, variables, who, what the plan does): who is "self" (the account's own
# token, the account subscribed), "unsubscribed" (its own token, no subscription),
# "service" or "none"; the plan answers (dict), hands graphql-core the resolved outcome
# (Replay), or steps aside before anything runs (None).
CASES: list[tuple[str, str, dict[str, Any], str, type]] = [
    ("a run", RUN, {"key": "k1", "tool": "TURBO"}, "self", dict),
    ("a run through fragments and an alias", FRAGMENTS, {"key": "k1"}, "self", dict),
    ("the same key for another tool", RUN, {"key": "used", "tool": "PRO"}, "self", dict),
    ("a run without credits", RUN, {"key": "k1", "tool": "TURBO"}, "unsubscribed", dict),
    ("a run without a token", RUN, {"key": "k1", "tool": "TURBO"}, "none", Replay),
    ("a variable missing", RUN, {"key": "k1"}, "self", type(None)),
    ("a variable of the wrong type", RUN, {"key": "k1", "tool": "NOPE"}, "self", type(None)),
    ("a pack purchase", BUY, {"key": "b1"}, "self", dict),
    ("an account created", CREATE, {"email": "@email"}, "service", dict),
]


async def _account(api: Api, who: str) -> str:
    account = await (api.create_account() if who == "unsubscribed" else api.subscribed_account())
    # A run already made with the key "used" (TURBO): the same key again conflicts.
    if who == "self":
        await api.run(account, "TURBO", key="used")
    return account


async def _ask(api: Api, account: str, case: tuple[str, str, dict[str, Any], str, type]) -> Any:
    _, document, variables, who, _ = case
    variables = {k: f"{account}@example.com" if v == "@email" else v for k, v in variables.items()}
    token = {"service": api.token(), "none": None}.get(who, api.token(account))
    return await api.post(document, variables, token=token)


def _without_ids(body: Any) -> Any:
    for error in body.get("errors", []):
        error.get("extensions", {}).pop("requestId", None)
    return body


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_a_planned_mutation_answers_as_with_the_fast_paths_off(
    api: Api,
    make_api: ApiFactory,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, dict[str, Any], str, type],
) -> None:
    # given two accounts alike, one served with plans, one without the fast paths
    stock = await make_api(query_plans=False)
    who = case[3]
    mine, theirs = await _account(api, who), await _account(api, who)
    outcomes: list[object] = []
    execute = MutationPlan.execute

    async def noting(plan: MutationPlan, *args: Any) -> Any:
        outcomes.append(await execute(plan, *args))
        return outcomes[-1]

    monkeypatch.setattr(MutationPlan, "execute", noting)

    # when each runs the mutation once
    planned = await _ask(api, mine, case)
    off = await _ask(stock, theirs, case)

    # then the same answer, and the plan did what the case expects of it
    assert _without_ids(planned) == _without_ids(off)
    assert len(outcomes) == 1 and isinstance(outcomes[0], case[4]), outcomes


async def test_a_planned_run_is_made_once(api: Api) -> None:
    account = await api.subscribed_account()
    before = (await api.balances(account))["creditsTotal"]

    first = await api.run(account, "TURBO", key="once")
    after = (await api.balances(account))["creditsTotal"]

    assert first["__typename"] == "GeneratorRun"
    assert after == before - first["generation"]["cost"]
    history = await api.as_user(
        account, "{ me { generations(first: 10) { edges { node { id } } } } }"
    )
    assert len(history["me"]["generations"]["edges"]) == 1
