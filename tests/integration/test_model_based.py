"""Random interleavings of every credit operation, checked against a reference model.

A hypothesis state machine drives one account through the GraphQL endpoint (subscribe,
buy packs and settle, refund or dispute their sandbox payments, run generators, claim,
complete, fail and cancel them, change and cancel plans, resubscribe, adjust credits as
support (bonus lots and corrections), sweep, move the clock), one
weighted random action per step, and after every step compares the app with
``tests/reference_model.py``:
the balances clients read, each generation and its holds, the ledger entry by entry, and
the audit. The machine owns its event loop (an
``asyncio.Runner`` per example): the pytest-asyncio loop is not usable inside a hypothesis
state machine.

To hunt for bugs beyond the fixed, derandomized budget:
``CREDITGATE_MODEL_RANDOM=1 CREDITGATE_MODEL_EXAMPLES=500 .venv/bin/pytest -x -k model``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from app.clock import FrozenClock
from app.main import create_app
from app.persistence.tables import GenerationRow, HoldRow, LedgerEntryRow
from app.services.audit import run_audit
from app.services.maintenance import sweep
from app.settings import Settings
from tests.api_client import CLAIM, Api
from tests.conftest import BACKENDS, JWT_SECRET, WRITTEN_TABLES
from tests.reference_model import (
    MONTHLY_CREDITS,
    PACKS,
    TARIFFS,
    Adjustment,
    CreditModel,
    Entry,
    Purchase,
    Refused,
)

# Bounded so each backend finishes in well under a minute on a 2-core machine.
EXAMPLES = int(os.environ.get("CREDITGATE_MODEL_EXAMPLES", "40"))
MACHINE_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=50,
    deadline=None,
    derandomize=os.environ.get("CREDITGATE_MODEL_RANDOM") is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Where the clock starts: month ends (Jan 31, Mar 31, Dec 31 before a leap February) and a
# leap day, so the anchors fall on days that later months lack.
STARTS = [
    datetime(2026, 1, 31, 9, 30, tzinfo=UTC),
    datetime(2026, 3, 31, 0, 0, tzinfo=UTC),
    datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
    datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
]
# How far back a start may be dated (None: now).
BACKDATES: list[timedelta | relativedelta | None] = [
    None,
    timedelta(0),
    timedelta(hours=5),
    timedelta(days=20),
    relativedelta(months=1),
    relativedelta(months=2),
    relativedelta(months=13),
    relativedelta(months=1, days=1),
]
MAX_REFUSALS = 2
STEPS = ["1s", "5min", "15min", "1h", "3d", "40d", "1mo", "3mo"]
RENEWAL_STEPS = ["next renewal", "just before next renewal", "renewal after next"]
# None: a fresh idempotency key; a number: one sent before (a retry, or a conflicting reuse).
KEYS = st.sampled_from([None, None, None, 0]).flatmap(
    lambda fresh: st.none() if fresh is None else st.integers(0, 50)
)
PROMPTS = st.sampled_from([None, "a brass robot"])
PACK_IDS = st.sampled_from([*PACKS, *PACKS, "pack-unknown"])

ACCOUNT = """creditsTotal subscriptionBalance packBalance packExpiresAt nextRenewalAt
  bonusBalance bonusExpiresAt
  subscription { plan interval status startedAt canceledAt endsAt }"""
ME = f"query {{ me {{ {ACCOUNT} }} }}"
PURCHASE = "id credits status expiresAt revokedCredits revocationTarget"
CREATE = "mutation($email: String!) { createAccount(input: {email: $email}) { id } }"
START = f"""
mutation($id: ID!, $plan: Plan!, $interval: BillingInterval!, $at: DateTime) {{
  startSubscription(input: {{accountId: $id, plan: $plan, interval: $interval, startedAt: $at}})
  {{ {ACCOUNT} }}
}}"""
CANCEL = f"mutation($id: ID!) {{ cancelSubscription(accountId: $id) {{ {ACCOUNT} }} }}"
CHANGE = f"""
mutation($id: ID!, $plan: Plan!, $interval: BillingInterval!) {{
  changeSubscription(input: {{accountId: $id, plan: $plan, interval: $interval}})
  {{ {ACCOUNT} }}
}}"""
BUY = f"""
mutation($packId: ID!, $key: String!) {{
  purchasePack(input: {{packId: $packId, idempotencyKey: $key}}) {{
    __typename
    ... on PackPurchased {{ purchase {{ {PURCHASE} }} account {{ {ACCOUNT} }} }}
    ... on PaymentPending {{ purchase {{ {PURCHASE} }} }}
    ... on PurchaseClosed {{ purchase {{ {PURCHASE} }} }}
  }}
}}"""
SETTLE = f"""
mutation($id: ID!, $outcome: SandboxPaymentOutcome!) {{
  sandboxSettlePayment(purchaseId: $id, outcome: $outcome) {{
    __typename
    ... on PackPurchased {{ purchase {{ {PURCHASE} }} }}
    ... on PaymentPending {{ purchase {{ {PURCHASE} }} }}
    ... on PurchaseClosed {{ purchase {{ {PURCHASE} }} }}
  }}
}}"""
# Mostly paid, so that there are credited packs to reverse.
OUTCOMES = [
    *["PAID"] * 4,
    "FAILED",
    "EXPIRED",
    *["REFUNDED", "DISPUTED", "DISPUTE_WON", "DISPUTE_LOST"] * 2,
]
RUN = f"""
mutation($tool: Tool!, $key: String!, $prompt: String) {{
  runGenerator(input: {{tool: $tool, idempotencyKey: $key, prompt: $prompt}}) {{
    __typename
    ... on GeneratorRun {{ generation {{ id tool cost status }} account {{ {ACCOUNT} }} }}
    ... on InsufficientCredits {{ required available }}
    ... on TooManyActiveGenerations {{ limit active }}
  }}
}}"""
ADJUST = f"""
mutation($id: ID!, $amount: Int!, $reason: String!, $key: String!, $at: DateTime) {{
  adjustCredits(input: {{accountId: $id, amount: $amount, reason: $reason,
                         idempotencyKey: $key, expiresAt: $at}}) {{
    __typename
    ... on CreditsAdjusted {{ adjustment {{ id amount expiresAt }} account {{ {ACCOUNT} }} }}
    ... on InsufficientCredits {{ required available }}
  }}
}}"""
# Bonus lots and corrections of every size; expiries around the renewals (None: the next).
ADJUST_AMOUNTS = [25, 60, 100, 400, 25, 60, -10, -60, -300, -5000]
ADJUST_EXPIRIES: list[timedelta | None] = [
    None,
    None,
    timedelta(hours=1),
    timedelta(days=10),
    timedelta(days=45),
    timedelta(days=70),
    timedelta(0),  # now: refused
]
CANCEL_RUN = f"""
mutation($id: ID!) {{
  cancelGeneration(id: $id) {{
    __typename
    ... on GenerationCanceled {{ generation {{ id status }} account {{ {ACCOUNT} }} }}
    ... on InvalidGenerationTransition {{ generation {{ id status }} }}
  }}
}}"""


def finish_document(field: str, success: str, argument: str) -> str:
    return f"""
mutation($id: ID!, $arg: String!) {{
  {field}(id: $id, {argument}: $arg) {{
    __typename
    ... on {success} {{ generation {{ id status }} account {{ {ACCOUNT} }} }}
    ... on InvalidGenerationTransition {{ generation {{ id status }} }}
  }}
}}"""


# The first page of the ledger records the renewals due, as every write does.
LEDGER_HEAD = "query { me { ledger(first: 1) { edges { node { kind } } } } }"
COMPLETE = finish_document("completeGeneration", "GenerationCompleted", "resultUrl")
FAIL = finish_document("failGeneration", "GenerationFailed", "reason")


@dataclass(frozen=True)
class Backend:
    """Hands each example a migrated database with no account in it."""

    name: str
    fresh_url: Callable[[], str]
    truncate: bool


class Action:
    def apply(self, machine: CreditsMachine) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Subscribe(Action):
    plan: str
    interval: str
    backdate: timedelta | relativedelta | None

    def apply(self, machine: CreditsMachine) -> None:
        machine.subscribe(self.plan, self.interval, self.backdate)


@dataclass(frozen=True)
class Cancel(Action):
    def apply(self, machine: CreditsMachine) -> None:
        machine.cancel()


@dataclass(frozen=True)
class ChangePlan(Action):
    plan: str
    interval: str

    def apply(self, machine: CreditsMachine) -> None:
        machine.change_plan(self.plan, self.interval)


@dataclass(frozen=True)
class Buy(Action):
    pack_id: str
    key: int | None

    def apply(self, machine: CreditsMachine) -> None:
        machine.buy(self.pack_id, self.key)


@dataclass(frozen=True)
class Run(Action):
    tool: str
    key: int | None
    prompt: str | None

    def apply(self, machine: CreditsMachine) -> None:
        machine.run_generator(self.tool, self.key, self.prompt)


@dataclass(frozen=True)
class Retry(Action):
    pick: int

    def apply(self, machine: CreditsMachine) -> None:
        machine.retry_an_earlier_request(self.pick)


@dataclass(frozen=True)
class Settle(Action):
    """The sandbox reports how a purchase's payment went: paid, failed, refunded, disputed."""

    pick: int
    outcome: str

    def apply(self, machine: CreditsMachine) -> None:
        machine.settle(self.pick, self.outcome)


@dataclass(frozen=True)
class Adjust(Action):
    """Support grants a bonus lot or takes credits back (a fresh key, or one sent before)."""

    amount: int
    expires_in: timedelta | None
    key: int | None

    def apply(self, machine: CreditsMachine) -> None:
        machine.adjust(self.amount, self.expires_in, self.key)


@dataclass(frozen=True)
class CancelRun(Action):
    """The owner takes back one of its runs: queued (cancelled) or not (refused)."""

    pick: int

    def apply(self, machine: CreditsMachine) -> None:
        machine.cancel_run(self.pick)


@dataclass(frozen=True)
class Claim(Action):
    limit: int
    tool: str | None

    def apply(self, machine: CreditsMachine) -> None:
        machine.claim(self.limit, self.tool)


@dataclass(frozen=True)
class Finish(Action):
    pick: int
    succeed: bool
    any_job: bool

    def apply(self, machine: CreditsMachine) -> None:
        machine.finish(self.pick, self.succeed, self.any_job)


@dataclass(frozen=True)
class Sweep(Action):
    def apply(self, machine: CreditsMachine) -> None:
        machine.run_the_sweep()


@dataclass(frozen=True)
class Straddle(Action):
    """A fail or a cancel sent just before a renewal that another request records first."""

    fail: bool
    pick: int

    def apply(self, machine: CreditsMachine) -> None:
        machine.straddle_the_next_renewal(self.fail, self.pick)


@dataclass(frozen=True)
class MoveClock(Action):
    step: str

    def apply(self, machine: CreditsMachine) -> None:
        machine.move_the_clock(self.step)


TOOLS = st.sampled_from(sorted(TARIFFS))
# One rule draws an action, weighted here. Separate rules would be swarm-tested (each
# example turns a random half of them off), which made the long chains the interesting
# bugs need (buy, run, claim, cancel, resubscribe, fail) too rare to find.
ACTIONS: st.SearchStrategy[Action] = st.sampled_from(
    [
        *[st.builds(Run, TOOLS, KEYS, PROMPTS)] * 6,
        *[st.builds(Buy, PACK_IDS, KEYS)] * 4,
        *[st.builds(Settle, st.integers(0, 50), st.sampled_from(OUTCOMES))] * 5,
        *[st.builds(Claim, st.integers(1, 3), st.none() | TOOLS)] * 3,
        *[st.builds(CancelRun, st.integers(0, 50))] * 2,
        *[
            st.builds(
                Adjust, st.sampled_from(ADJUST_AMOUNTS), st.sampled_from(ADJUST_EXPIRIES), KEYS
            )
        ]
        * 4,
        *[
            st.builds(
                Finish, st.integers(0, 50), st.booleans(), st.sampled_from([0, 0, 1]).map(bool)
            )
        ]
        * 5,
        *[st.builds(MoveClock, st.sampled_from(STEPS + RENEWAL_STEPS))] * 4,
        *[
            st.builds(
                Subscribe,
                st.sampled_from(["STARTER", "PRO"]),
                st.sampled_from(["MONTHLY", "ANNUAL"]),
                st.sampled_from(BACKDATES),
            )
        ]
        * 2,
        *[st.just(Cancel())] * 2,
        *[
            st.builds(
                ChangePlan,
                st.sampled_from(["STARTER", "PRO"]),
                st.sampled_from(["MONTHLY", "ANNUAL"]),
            )
        ]
        * 2,
        *[st.just(Sweep())] * 2,
        *[st.builds(Retry, st.integers(0, 50))] * 2,
        *[st.builds(Straddle, st.booleans(), st.integers(0, 50))] * 2,
    ]
).flatmap(lambda action: action)


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class CreditsMachine(RuleBasedStateMachine):
    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self.runner = asyncio.Runner()
        self.clock = FrozenClock(STARTS[0])
        app_settings = Settings(
            _env_file=None,
            env="test",
            database_url=backend.fresh_url(),
            jwt_secret=JWT_SECRET,
            starter_monthly_credits=MONTHLY_CREDITS["STARTER"],
            pro_monthly_credits=MONTHLY_CREDITS["PRO"],
            sweep_interval_seconds=0,
            # Purchases stay PENDING until the machine settles their sandbox payment.
            sandbox_payments="pending",
        )
        self.app = create_app(app_settings, self.clock)
        self.services = self.app.state.services
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver"
        )
        self.api = Api(self.client, JWT_SECRET, self.clock)
        self.model = CreditModel(self.clock.now())
        self.account_id = ""
        self.sent_keys: list[str] = []
        # Refused back-office calls, so a few per example are tried but not dozens.
        self.refusals: Counter[str] = Counter()
        if backend.truncate:
            self.call(self._truncate())

    def call(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    async def _truncate(self) -> None:
        async with self.services.db.engine.begin() as conn:
            await conn.execute(
                sa.text(f"TRUNCATE {', '.join(WRITTEN_TABLES)} RESTART IDENTITY CASCADE")
            )

    def teardown(self) -> None:
        try:
            self.call(self.client.aclose())
            self.call(self.services.db.dispose())
        finally:
            self.runner.close()

    # requests ------------------------------------------------------------------------------

    def user(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call(self.api.post(query, variables, token=self.api.token(self.account_id)))

    def service(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call(self.api.post(query, variables, token=self.api.token()))

    def expect_data(self, body: dict[str, Any], field: str) -> Any:
        assert "errors" not in body, body["errors"]
        return body["data"][field]

    def expect_error(self, body: dict[str, Any], code: str) -> None:
        assert body.get("data") is None, body
        assert [e["extensions"]["code"] for e in body["errors"]] == [code], body

    def expect_account(self, account: dict[str, Any]) -> None:
        """What a client reads equals the model's balances at this instant."""
        model = self.model
        sub = model.subscription
        expected_subscription = (
            None
            if sub is None
            else {
                "plan": sub.plan,
                "interval": sub.interval,
                "status": sub.status(model.now),
                "startedAt": sub.started_at,
                "canceledAt": sub.canceled_at,
                "endsAt": sub.ends_at(),
            }
        )
        seen_subscription = account["subscription"] and {
            **account["subscription"],
            "startedAt": at(account["subscription"]["startedAt"]),
            "canceledAt": at(account["subscription"]["canceledAt"]),
            "endsAt": at(account["subscription"]["endsAt"]),
        }
        assert {
            "creditsTotal": account["creditsTotal"],
            "subscriptionBalance": account["subscriptionBalance"],
            "packBalance": account["packBalance"],
            "packExpiresAt": at(account["packExpiresAt"]),
            "nextRenewalAt": at(account["nextRenewalAt"]),
            "bonusBalance": account["bonusBalance"],
            "bonusExpiresAt": at(account["bonusExpiresAt"]),
            "subscription": seen_subscription,
        } == {
            "creditsTotal": model.credits_total,
            "subscriptionBalance": model.subscription_balance,
            "packBalance": model.pack_balance,
            "packExpiresAt": model.pack_expires_at(),
            "nextRenewalAt": model.next_renewal_at(),
            "bonusBalance": model.bonus_balance,
            "bonusExpiresAt": model.bonus_expires_at(),
            "subscription": expected_subscription,
        }

    # setting up ----------------------------------------------------------------------------

    @initialize(
        start=st.sampled_from(STARTS),
        plan=st.sampled_from(["STARTER", "PRO", "STARTER", "PRO", None]),
        interval=st.sampled_from(["MONTHLY", "ANNUAL"]),
        backdate=st.sampled_from(BACKDATES),
    )
    def open_account(
        self,
        start: datetime,
        plan: str | None,
        interval: str,
        backdate: timedelta | relativedelta | None,
    ) -> None:
        """A new account, most often subscribed at once."""
        self.clock.set(start)
        self.model = CreditModel(start)
        email = f"model-{uuid.uuid4().hex}@example.com"
        created = self.expect_data(self.service(CREATE, {"email": email}), "createAccount")
        self.account_id = created["id"]
        if plan is not None:
            self.subscribe(plan, interval, backdate)

    def key(self, pick: int | None) -> str:
        if pick is None or not self.sent_keys:
            key = f"key-{len(self.sent_keys)}"
        else:
            key = self.sent_keys[pick % len(self.sent_keys)]
        self.sent_keys.append(key)
        return key

    @rule(action=ACTIONS)
    def step(self, action: Action) -> None:
        action.apply(self)

    def may_be_refused(self, name: str) -> bool:
        """Whether another call that will be refused is worth a step."""
        return self.refusals[name] < MAX_REFUSALS

    # subscriptions -------------------------------------------------------------------------

    def subscribe(
        self, plan: str, interval: str, backdate: timedelta | relativedelta | None
    ) -> None:
        if self.model.next_renewal_at() and not self.may_be_refused("subscribe"):
            return
        now = self.clock.now()
        started_at = now if backdate is None else now - backdate
        canceled_at = self.model.subscription and self.model.subscription.canceled_at
        if canceled_at and started_at < canceled_at and self.refusals["subscribe"] >= MAX_REFUSALS:
            backdate = None  # enough refused back-dated starts: start now
            started_at = now
        variables = {
            "id": self.account_id,
            "plan": plan,
            "interval": interval,
            "at": None if backdate is None else started_at.isoformat(),
        }
        body = self.service(START, variables)
        refused = self.model.start(plan, interval, started_at)
        if refused:
            self.refusals["subscribe"] += 1
            self.expect_error(body, refused.why)
        else:
            self.expect_account(self.expect_data(body, "startSubscription"))

    def cancel(self) -> None:
        if self.model.next_renewal_at() is None and not self.may_be_refused("cancel"):
            return
        body = self.service(CANCEL, {"id": self.account_id})
        refused = self.model.cancel()
        if refused:
            self.refusals["cancel"] += 1
            self.expect_error(body, refused.why)
        else:
            self.expect_account(self.expect_data(body, "cancelSubscription"))

    def change_plan(self, plan: str, interval: str) -> None:
        if self.model.next_renewal_at() is None and not self.may_be_refused("change"):
            return
        body = self.service(CHANGE, {"id": self.account_id, "plan": plan, "interval": interval})
        refused = self.model.change(plan, interval)
        if refused:
            self.refusals["change"] += 1
            self.expect_error(body, refused.why)
        else:
            self.expect_account(self.expect_data(body, "changeSubscription"))

    # client mutations ----------------------------------------------------------------------

    def buy(self, pack_id: str, pick: int | None) -> None:
        if self.model.next_renewal_at() is None and not self.may_be_refused("buy"):
            return
        self.purchase(pack_id, self.key(pick))

    def purchase(self, pack_id: str, key: str) -> None:
        result = self.expect_data(self.user(BUY, {"packId": pack_id, "key": key}), "purchasePack")
        expected = self.model.purchase(pack_id, key)
        if isinstance(expected, Refused):
            self.refusals["buy"] += 1
            assert result["__typename"] == expected.why, result
            return
        if not expected.id:  # a new purchase: learn its id
            expected.id = result["purchase"]["id"]
        self.expect_purchase(result, expected)

    def expect_purchase(self, result: dict[str, Any], expected: Purchase) -> None:
        typename = {"PENDING": "PaymentPending", "FULFILLED": "PackPurchased"}
        assert result["__typename"] == typename.get(expected.status, "PurchaseClosed"), result
        purchase = dict(result["purchase"])
        expires_at = at(purchase.pop("expiresAt"))
        assert purchase == {
            "id": expected.id,
            "credits": expected.credits,
            "status": expected.status,
            "revokedCredits": expected.revoked,
            "revocationTarget": expected.target,
        }, (purchase, expected)
        assert expires_at == (expected.lot.expires_at if expected.lot else None)
        if "account" in result:
            self.expect_account(result["account"])

    def settle(self, pick: int, outcome: str) -> None:
        if not self.model.purchases:
            return
        # Settle pending payments and reverse paid ones, mostly; now and then any purchase.
        wanted = "OPEN" if outcome in ("PAID", "FAILED", "EXPIRED") else "PAID"
        likely = [p for p in self.model.purchases if p.payment == wanted]
        purchases = likely if likely and pick % 5 else self.model.purchases
        expected = purchases[pick % len(purchases)]
        body = self.service(SETTLE, {"id": expected.id, "outcome": outcome})
        result = self.expect_data(body, "sandboxSettlePayment")
        settled = self.model.settle(expected, outcome)
        if isinstance(settled, Refused):
            assert result["__typename"] == "PurchaseNotFound", result
            return
        self.expect_purchase(result, settled)

    def run_generator(self, tool: str, pick: int | None, prompt: str | None) -> None:
        self.run(tool, self.key(pick), prompt)

    def run(self, tool: str, key: str, prompt: str | None) -> None:
        variables = {"tool": tool, "key": key, "prompt": prompt}
        result = self.expect_data(self.user(RUN, variables), "runGenerator")
        expected = self.model.run(tool, prompt, key)
        if isinstance(expected, Refused):
            assert result["__typename"] == expected.why, result
            if expected.why == "InsufficientCredits":
                assert (result["required"], result["available"]) == (
                    expected.required,
                    expected.available,
                )
            return
        assert result["__typename"] == "GeneratorRun", result
        generation = result["generation"]
        if not expected.id:
            expected.id = generation["id"]
        assert generation == {
            "id": expected.id,
            "tool": expected.tool,
            "cost": expected.cost,
            "status": expected.status,
        }
        self.expect_account(result["account"])

    def adjust(self, amount: int, expires_in: timedelta | None, pick: int | None) -> None:
        no_date = amount > 0 and expires_in is None and self.model.cycle_ends_at is None
        if no_date and not self.may_be_refused("adjust"):
            return
        expires_at = None if expires_in is None or amount < 0 else self.clock.now() + expires_in
        self.adjust_with(amount, f"Support ticket {amount}", expires_at, self.key(pick))

    def adjust_with(self, amount: int, reason: str, expires_at: datetime | None, key: str) -> None:
        variables = {
            "id": self.account_id,
            "amount": amount,
            "reason": reason,
            "key": key,
            "at": expires_at.isoformat() if expires_at else None,
        }
        body = self.service(ADJUST, variables)
        expected = self.model.adjust(amount, reason, expires_at, key)
        if isinstance(expected, Refused) and expected.why == "BAD_USER_INPUT":
            self.refusals["adjust"] += 1
            self.expect_error(body, "BAD_USER_INPUT")
            return
        result = self.expect_data(body, "adjustCredits")
        if isinstance(expected, Refused):
            assert result["__typename"] == expected.why, result
            if expected.why == "InsufficientCredits":
                assert (result["required"], result["available"]) == (
                    expected.required,
                    expected.available,
                )
            return
        assert result["__typename"] == "CreditsAdjusted", result
        adjustment = result["adjustment"]
        if not expected.id:  # a new adjustment: learn its id, which names its bonus lot
            expected.id = adjustment["id"]
            if expected.lot is not None:
                expected.lot.id = expected.id
        assert (adjustment["id"], adjustment["amount"], at(adjustment["expiresAt"])) == (
            expected.id,
            expected.amount,
            expected.expires_at,
        )
        self.expect_account(result["account"])

    def retry_an_earlier_request(self, pick: int) -> None:
        """A client retries a request it sent before, same key and same arguments."""
        if not self.model.keys:
            return
        key = sorted(self.model.keys)[pick % len(self.model.keys)]
        operation, arguments, first = self.model.keys[key]
        if operation == "purchasePack":
            self.purchase(str(arguments[0]), key)
        elif operation == "adjustCredits":
            assert isinstance(first, Adjustment)
            amount, reason, expires_at = arguments
            assert isinstance(amount, int) and isinstance(reason, str)
            assert expires_at is None or isinstance(expires_at, datetime)
            self.adjust_with(amount, reason, expires_at, key)
        else:
            tool, prompt = arguments
            self.run(str(tool), key, prompt if prompt is None else str(prompt))

    # the worker's side ---------------------------------------------------------------------

    def claim(self, limit: int, tool: str | None) -> None:
        tools = None if tool is None else [tool]
        claimed = self.expect_data(
            self.service(CLAIM, {"limit": limit, "tools": tools}), "claimGenerations"
        )
        expected = self.model.claim(limit, tools)
        assert [(c["id"], c["status"]) for c in claimed] == [(g.id, "RUNNING") for g in expected]

    def finish(self, pick: int, succeed: bool, any_job: bool) -> None:
        """A worker completes or fails a running job, or any job: unclaimed, again, late."""
        running = [g for g in self.model.generations if g.status == "RUNNING"]
        candidates = self.model.generations if any_job or not running else running
        generation = candidates[pick % len(candidates)] if candidates else None
        generation_id = generation.id if generation else str(uuid.uuid4())
        if succeed:
            body = self.service(COMPLETE, {"id": generation_id, "arg": "https://cdn.example/m"})
            result = self.expect_data(body, "completeGeneration")
        else:
            body = self.service(FAIL, {"id": generation_id, "arg": "GPU out of memory"})
            result = self.expect_data(body, "failGeneration")
        if generation is None:
            assert result["__typename"] == "GenerationNotFound", result
            return
        refused = self.model.complete(generation) if succeed else self.model.fail(generation)
        if refused:
            assert result["__typename"] == "InvalidGenerationTransition", result
            assert result["generation"] == {"id": generation.id, "status": refused.why}
            return
        typename = "GenerationCompleted" if succeed else "GenerationFailed"
        assert result["__typename"] == typename, result
        assert result["generation"] == {"id": generation.id, "status": generation.status}
        self.expect_account(result["account"])

    def cancel_run(self, pick: int) -> None:
        queued = [g for g in self.model.generations if g.status == "QUEUED"]
        candidates = queued if queued and pick % 4 else self.model.generations
        if not candidates:
            return
        generation = candidates[pick % len(candidates)]
        body = self.user(CANCEL_RUN, {"id": generation.id})
        result = self.expect_data(body, "cancelGeneration")
        refused = self.model.cancel_run(generation)
        if refused:
            assert result["__typename"] == "InvalidGenerationTransition", result
            assert result["generation"] == {"id": generation.id, "status": refused.why}
            return
        assert result["__typename"] == "GenerationCanceled", result
        assert result["generation"] == {"id": generation.id, "status": "CANCELED"}
        self.expect_account(result["account"])

    def expect_me(self) -> dict[str, Any]:
        me: dict[str, Any] = self.expect_data(self.user(ME), "me")
        return me

    def run_the_sweep(self) -> None:
        if not self.model.pending_renewals and not self.model.stale_generations():
            if not self.may_be_refused("sweep"):
                return
            self.refusals["sweep"] += 1  # nothing to do: a few such sweeps are enough
        report = self.call(sweep(self.services))
        assert (report.renewed_accounts, report.released_generations) == self.model.sweep()

    def straddle_the_next_renewal(self, fail: bool, pick: int) -> None:
        """The request read the clock just before the renewal; another recorded it first.

        The app's clock says one second before the renewal while that request runs; the
        model acts at the renewal, as the account has recorded it: a held part from the
        ended cycle expires, a cancel cancels the new cycle.
        """
        renews_at = self.model.cycle_ends_at
        if renews_at is None:
            return
        self.clock.set(renews_at)
        self.model.advance(renews_at)
        self.expect_data(self.user(LEDGER_HEAD), "me")
        self.model.record_due_renewals()
        self.clock.set(renews_at - timedelta(seconds=1))
        try:
            if fail:
                self.finish(pick, succeed=False, any_job=False)
            else:
                self.cancel()
        finally:
            self.clock.set(renews_at)

    # time ----------------------------------------------------------------------------------

    def move_the_clock(self, step: str) -> None:
        now = self.clock.now()
        ends = self.model.cycle_ends_at
        sub = self.model.subscription
        to = {
            "1s": now + timedelta(seconds=1),
            "5min": now + timedelta(minutes=5),
            "15min": now + timedelta(minutes=15),
            "1h": now + timedelta(hours=1),
            "3d": now + timedelta(days=3),
            "40d": now + timedelta(days=40),
            "1mo": now + relativedelta(months=1),
            "3mo": now + relativedelta(months=3),
        }.get(step)
        if to is None and ends is not None and sub is not None and self.model.cycle:
            k = self.model.cycle[1]
            to = {
                "next renewal": ends,
                "just before next renewal": max(now, ends - timedelta(seconds=1)),
                "renewal after next": sub.started_at + relativedelta(months=k + 2),
            }[step]
        to = to or now + timedelta(days=1)
        self.clock.set(to)
        self.model.advance(to)

    # after every step ----------------------------------------------------------------------

    @invariant()
    def balances_match(self) -> None:
        if self.account_id:
            self.expect_account(self.expect_me())

    @invariant()
    def generations_holds_and_ledger_match(self) -> None:
        if self.account_id:
            self.call(self._compare_rows())

    @invariant()
    def audit_finds_nothing(self) -> None:
        report = self.call(run_audit(self.services))
        assert report.findings == []

    async def _compare_rows(self) -> None:
        model = self.model
        generations = {g.id: g for g in model.generations}
        lots = {lot.id: lot for lot in [*model.lots, *model.bonus]}
        g, h, e = GenerationRow.__table__.c, HoldRow.__table__.c, LedgerEntryRow.__table__.c  # type: ignore[attr-defined]
        async with self.services.db.engine.connect() as conn:
            generation_rows = (
                await conn.execute(
                    sa.select(g.id, g.tool, g.cost, g.status).where(g.account_id == self.account_id)
                )
            ).all()
            hold_rows = (
                await conn.execute(
                    sa.select(h.generation_id, h.bucket, h.amount, h.lot_id, h.status)
                    .where(h.account_id == self.account_id)
                    .order_by(h.id)
                )
            ).all()
            ledger_rows = (
                await conn.execute(
                    sa.select(
                        e.kind,
                        e.bucket,
                        e.amount,
                        e.balance_after,
                        e.reference_type,
                        e.reference_id,
                        e.lot_id,
                        e.occurred_at,
                    )
                    .where(e.account_id == self.account_id)
                    .order_by(e.id)
                )
            ).all()
        # generations and their holds
        assert {row.id: (row.tool, row.cost, row.status) for row in generation_rows} == {
            gen.id: (gen.tool, gen.cost, gen.status) for gen in model.generations
        }
        seen_holds: dict[int, list[tuple[str, int, int | None, str]]] = {}
        for row in hold_rows:
            lot_number = lots[row.lot_id].number if row.lot_id else None
            seen_holds.setdefault(generations[row.generation_id].number, []).append(
                (row.bucket, row.amount, lot_number, row.status)
            )
        assert seen_holds == {
            gen.number: [
                (hold.bucket, hold.amount, hold.lot.number if hold.lot else None, hold.status)
                for hold in gen.holds
            ]
            for gen in model.generations
            if gen.holds
        }
        # the ledger: every balance_after is the running sum of its bucket
        running = {"SUBSCRIPTION": 0, "PACK": 0, "BONUS": 0}
        for row in ledger_rows:
            running[row.bucket] += row.amount
            assert row.balance_after == running[row.bucket], row
        entries = [
            Entry(
                row.kind,
                row.bucket,
                row.amount,
                lots[row.lot_id].number if row.lot_id else None,
                (
                    generations[row.reference_id].number
                    if row.reference_type == "GENERATION"
                    else None
                ),
                row.occurred_at,
            )
            for row in ledger_rows
        ]
        # chunk by chunk: each write that must have reached the ledger, in order
        assert len(entries) == sum(len(chunk) for chunk in model.chunks), (
            entries,
            model.chunks,
            model.pending,
        )
        start = 0
        for chunk in model.chunks:
            seen = entries[start : start + len(chunk)]
            assert canonical(seen) == canonical(chunk), (seen, chunk)
            start += len(chunk)


def canonical(chunk: list[Entry]) -> list[Entry]:
    """One write's entries, with the orders the rules leave open fixed.

    Packs expiring at one instant may be written in any order, and a sweep may release the
    jobs created at one instant in any order; everything else keeps its place. In every
    write, the entries of generations follow the others.
    """
    others = [e for e in chunk if e.generation is None]
    of_generations = [e for e in chunk if e.generation is not None]
    fixed: list[Entry] = []
    for (pack_expiry, _), run in groupby(others, key=lambda e: (_is_pack_expiry(e), e.occurred_at)):
        entries = list(run)
        fixed += sorted(entries, key=lambda e: e.lot or 0) if pack_expiry else entries
    return fixed + sorted(of_generations, key=lambda e: e.generation or 0)


def _is_pack_expiry(entry: Entry) -> bool:
    return (entry.kind, entry.bucket) == ("EXPIRY", "PACK")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_app_agrees_with_the_reference_model(
    backend_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend_name == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        counter = iter(range(1_000_000))

        def fresh_sqlite() -> str:
            path = tmp_path / f"example-{next(counter)}.sqlite3"
            shutil.copy(template, path)
            return f"sqlite+aiosqlite:///{path}"

        backend = Backend("sqlite", fresh_sqlite, truncate=False)
    else:
        url: str = request.getfixturevalue("postgres_database")
        backend = Backend("postgres", lambda: url, truncate=True)
    # Hypothesis calls any factory of a machine; its annotation names a class. A lambda, as
    # before: the derandomized examples are seeded from it, so the budget runs the same cases.
    run_state_machine_as_test(
        lambda: CreditsMachine(backend),  # type: ignore[arg-type]
        settings=MACHINE_SETTINGS,
    )
