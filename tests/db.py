"""Reading rows straight from the database, to check what the API says against what it wrote."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence.unit_of_work import Database


class Rows:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.text(sql), params)
            return [dict(row) for row in result.mappings()]

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.text(sql), params)

    async def ledger(self, account_id: str) -> list[dict[str, Any]]:
        return await self.all(
            "SELECT kind, bucket, amount, balance_after, reference_type, reference_id"
            " FROM ledger_entries WHERE account_id = :a ORDER BY id",
            a=account_id,
        )

    async def account(self, account_id: str) -> dict[str, Any]:
        (row,) = await self.all("SELECT * FROM accounts WHERE id = :a", a=account_id)
        return row

    async def count(self, table: str) -> int:
        (row,) = await self.all(f"SELECT count(*) AS n FROM {table}")
        return int(row["n"])

    async def ledger_sums(self, account_id: str) -> dict[str, int]:
        rows = await self.all(
            "SELECT bucket, COALESCE(SUM(amount), 0) AS total FROM ledger_entries"
            " WHERE account_id = :a GROUP BY bucket",
            a=account_id,
        )
        sums = {"SUBSCRIPTION": 0, "PACK": 0}
        sums.update({row["bucket"]: int(row["total"]) for row in rows})
        return sums


def sent_statements(app: Any, *, transactions: bool = False) -> AbstractContextManager[list[str]]:
    """The statements the app's database is sent meanwhile, on either path; with
    ``transactions``, each BEGIN and COMMIT too (round trips)."""
    db: Database = app.state.services.db
    return db.recording(transactions=transactions)
