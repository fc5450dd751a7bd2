"""Fuzzing every query and mutation with documents schemathesis generates from the schema.

The schema comes from the app's own introspection over HTTP; documents are drawn with a
fixed count per operation and a fixed seed, then sent through httpx to the ASGI app as a
user and as a service, so the run is bounded and repeatable. It fails on any 5xx, on any
error that leaks internals, on any masked (unexpected) error, and on any balance the ledger
does not explain.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from graphql import get_introspection_query
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes
from schemathesis.specs.graphql import scalars
from sqlalchemy import func
from sqlmodel import select

from app.persistence.tables import AccountRow, LedgerEntryRow
from graphql_schema.schema import create_schema
from tests.api_client import Api
from tests.conftest import ApiFactory

# Documents drawn per operation and mode; each is sent once per token.
EXAMPLES = {GenerationMode.POSITIVE: 80, GenerationMode.NEGATIVE: 30}
MASKED = "Unexpected error."
LEAKS = re.compile(
    r"Traceback|File \"|sqlalchemy|asyncpg|aiosqlite|psycopg|\bSELECT\b|\bINSERT\b|\bUPDATE\b"
    r"|\b[A-Z]\w+(Error|Exception)\b"
)
PACKS = ["pack-500", "pack-1000", "pack-5000", "no-such-pack"]
# Ids a database may choke on: NUL, oversized, SQL-ish, control and wide characters.
HOSTILE_IDS = ["\x00", "pack-500\x00", "x" * 5000, "' OR 1=1 --", "\x1b[0m", "🎨" * 40, ""]


def _ids(known: list[str]) -> st.SearchStrategy[Any]:
    """IDs that hit real rows most of the time, hostile or random text otherwise."""
    return st.one_of(
        st.sampled_from(known + PACKS), st.sampled_from(HOSTILE_IDS), st.text(max_size=40)
    ).map(nodes.String)


_DATETIMES = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda moment: nodes.String(moment.isoformat()))


def draw_bodies(strategy: st.SearchStrategy[Any], count: int) -> list[str]:
    """Up to ``count`` documents from ``strategy``, the same ones on every run."""
    drawn: list[str] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def draw(case: Any) -> None:
        drawn.append(str(case.body))

    draw()
    return drawn


def generate_documents(schema: Any) -> list[tuple[str, str]]:
    """(operation, document) pairs: ``EXAMPLES`` for every operation and mode."""
    documents: list[tuple[str, str]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, count in EXAMPLES.items():
            bodies = draw_bodies(operation.as_strategy(generation_mode=mode), count)
            documents += [(operation.label, body) for body in bodies]
    return documents


def problems_in(response: Any) -> list[str]:
    if response.status_code >= 500:
        return [f"{response.status_code}: {response.text[:200]}"]
    if response.status_code != 200:
        return []
    found = []
    for error in response.json().get("errors", []):
        message = str(error.get("message", ""))
        code = (error.get("extensions") or {}).get("code")
        if message == MASKED:
            found.append(f"masked unexpected error {error}")
        elif LEAKS.search(message) or "stacktrace" in str(error.get("extensions")):
            found.append(f"leaky error: {message[:200]}")
        elif "path" in error and code is None:
            found.append(f"unmasked execution error without a code: {message[:200]}")
    return found


def outcome_of(response: Any) -> list[str]:
    """What a response said, for the run's summary: data, or each error's code."""
    if response.status_code != 200:
        return [f"http {response.status_code}"]
    errors = response.json().get("errors") or []
    codes = [(e.get("extensions") or {}).get("code") or "GRAPHQL_VALIDATION" for e in errors]
    return codes or ["data"]


async def ledger_mismatches(api: Api, app_engine: Any) -> list[str]:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(app_engine) as session:
        accounts = (await session.exec(select(AccountRow))).all()
        sums = dict(
            (
                await session.exec(
                    select(LedgerEntryRow.account_id, func.sum(LedgerEntryRow.amount)).group_by(
                        LedgerEntryRow.account_id
                    )
                )
            ).all()
        )
    return [
        f"{a.id}: balances {a.subscription_balance}+{a.pack_balance}+{a.bonus_balance}, "
        f"ledger {sums.get(a.id, 0)}"
        for a in accounts
        if a.subscription_balance + a.pack_balance + a.bonus_balance != (sums.get(a.id) or 0)
    ]


async def test_generated_documents_never_break_the_gateway(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an app without rate limits (the fuzzer is one busy client) and a few accounts
    api = await make_api()
    user_id = await api.subscribed_account(plan="PRO")
    await api.buy(user_id, "pack-1000", "seed-pack")
    others = [await api.subscribed_account() for _ in range(2)] + [await api.create_account()]
    introspection = await api.as_service(get_introspection_query())
    monkeypatch.setitem(scalars.CUSTOM_SCALARS, "ID", _ids([user_id, *others]))
    monkeypatch.setitem(scalars.CUSTOM_SCALARS, "DateTime", _DATETIMES)
    schema = schemathesis.graphql.from_dict(introspection)
    documents = generate_documents(schema)
    tokens = {"user": api.token(user_id), "service": api.token()}

    # when every document is sent as a user and as a service
    sent, statuses, outcomes, problems = 0, Counter[int](), Counter[str](), []
    for label, document in documents:
        for role, token in tokens.items():
            response = await api.client.post(
                "/graphql",
                json={"query": document},
                headers={"authorization": f"Bearer {token}"},
            )
            sent += 1
            statuses[response.status_code] += 1
            outcomes.update(outcome_of(response))
            problems += [f"{label} as {role}: {p}\n{document}" for p in problems_in(response)]

    # then nothing failed and every balance is the sum of its ledger
    engine = api.client._transport.app.state.services.db.engine  # type: ignore[attr-defined]
    mismatches = await ledger_mismatches(api, engine)
    operations = sorted({label for label, _ in documents})
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(
        f"\nfuzz: {sent} requests, {len(documents)} documents, {len(operations)} operations, "
        f"{server_errors} 5xx; statuses {dict(statuses)}; outcomes {dict(outcomes.most_common())}"
    )
    # The app under test serves the sandbox provider, so its schema has sandboxSettlePayment.
    served = create_schema(sandbox_payments=True)._schema
    root_fields = {
        f"{root.name}.{name}"
        for root in (served.query_type, served.mutation_type)
        if root is not None
        for name in root.fields
    }
    assert set(operations) == root_fields, root_fields ^ set(operations)
    assert not problems, "\n\n".join(problems[:10])
    assert not mismatches, mismatches
