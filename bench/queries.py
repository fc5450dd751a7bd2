"""In-process SQL counts: what each request sends to the database, via an engine listener."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from app.main import create_app
from app.persistence.unit_of_work import Database
from app.settings import Settings
from bench.reference import create_reference_app

ACCOUNTS = """
query Accounts($ids: [ID!]!) {
  accounts(ids: $ids) { id creditsTotal packBalance subscription { plan status endsAt } }
}
"""


@contextmanager
def recorded(app: Starlette, trips: list[str] | None = None) -> Iterator[list[str]]:
    """The statements the app's database is sent (through the engine or the driver lane),
    filled in when the block ends; ``trips`` also gets each BEGIN and COMMIT (round trips)."""
    db: Database = app.state.services.db
    statements: list[str] = []
    with db.recording() as sent:
        yield statements
    statements.extend(s for s in sent if s not in ("BEGIN", "COMMIT", "ROLLBACK"))
    if trips is not None:
        trips.extend(sent)


@asynccontextmanager
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        yield http


async def statement_counts(
    settings: Settings,
    service_token: str,
    account_ids: list[str],
    calls: dict[str, dict[str, tuple[str, dict[str, Any], str | None]]],
) -> dict[str, Any]:
    """SQL statements per request: accounts(ids:) at 1, 10, 100 ids, and each benchmarked
    operation on creditgate and on the reference, which must send the same statements."""
    creditgate = create_app(settings)
    reference = create_reference_app(settings)
    result: dict[str, Any] = {"accounts_ids": {}, "operations": {}, "round_trips": {}}
    try:
        async with client(creditgate) as http:
            for size in (1, 10, 100):
                body = {"query": ACCOUNTS, "variables": {"ids": account_ids[:size]}}
                headers = {"Authorization": f"Bearer {service_token}"}
                with recorded(creditgate) as statements:
                    response = await http.post("/graphql", json=body, headers=headers)
                data = response.json()
                assert "errors" not in data, data
                assert len(data["data"]["accounts"]) == size
                result["accounts_ids"][str(size)] = len(statements)
        for operation, targets in calls.items():
            seen: dict[str, list[str]] = {}
            for name, app in (("creditgate", creditgate), ("reference", reference)):
                path, body, authorization = targets[name]
                headers = {"Authorization": authorization} if authorization else {}
                trips: list[str] = []
                async with client(app) as http:
                    with recorded(app, trips if name == "creditgate" else None) as (statements):
                        response = await http.post(path, json=body, headers=headers)
                if name == "creditgate":
                    result["round_trips"][operation] = len(trips)
                assert response.status_code == 200, response.text
                assert "errors" not in response.json(), response.text
                seen[name] = statements
            result["operations"][operation] = {
                "creditgate": len(seen["creditgate"]),
                "reference": len(seen["reference"]),
                "same_sql": seen["creditgate"] == seen["reference"],
            }
    finally:
        await creditgate.state.services.db.dispose()
        await reference.state.services.db.dispose()
    counts = result["accounts_ids"]
    result["accounts_ids_constant"] = len(set(counts.values())) == 1
    return result
