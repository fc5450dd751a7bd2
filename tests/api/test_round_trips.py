"""A run on PostgreSQL is five round trips: BEGIN, lock, read the state, write the plan, COMMIT.

Counted in the process with SQLAlchemy's engine events: every statement sent
(``before_cursor_execute``) plus the transaction's BEGIN and COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from app.clock import FrozenClock
from tests.api_client import Api
from tests.db import Rows

MAX_RUN_ROUND_TRIPS = 5


@contextmanager
def round_trips(rows: Rows) -> Iterator[list[str]]:
    sent: list[str] = []
    engine = rows.engine.sync_engine

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        sent.append(" ".join(text.split())[:60])

    def begin(_conn: Any) -> None:
        sent.append("BEGIN")

    def commit(_conn: Any) -> None:
        sent.append("COMMIT")

    listeners: list[tuple[str, Callable[..., Any]]] = [
        ("before_cursor_execute", statement),
        ("begin", begin),
        ("commit", commit),
    ]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield sent
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


def postgres_only(rows: Rows) -> None:
    if rows.engine.dialect.name != "postgresql":
        pytest.skip("round trips are counted on PostgreSQL; SQLite is in the process")


async def test_run_generator_takes_at_most_five_round_trips_on_postgres(
    api: Api, rows: Rows
) -> None:
    postgres_only(rows)
    # given an account that has run once (connections and statements warmed up)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    # when
    with round_trips(rows) as sent:
        run = await api.run(account_id, "TURBO", key="counted")
    # then
    assert run["account"]["creditsTotal"] == 960
    assert len(sent) <= MAX_RUN_ROUND_TRIPS, sent
    assert sent[0] == "BEGIN" and sent[-1] == "COMMIT"


async def test_a_run_that_records_renewals_and_spends_packs_is_still_five_round_trips(
    api: Api, rows: Rows, clock: FrozenClock
) -> None:
    postgres_only(rows)
    # given an account with a pack, two renewals due, warmed up
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    await api.run(account_id, "TURBO", key="warm")
    clock.advance(timedelta(days=62))
    # when
    with round_trips(rows) as sent:
        run = await api.run(account_id, "ULTRA", key="counted")
    # then renewals and the spend were written, in at most five round trips
    assert run["account"]["creditsTotal"] == 1000 - 80
    assert len(sent) <= MAX_RUN_ROUND_TRIPS, sent
