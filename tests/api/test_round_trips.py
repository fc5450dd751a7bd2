"""A run on PostgreSQL is five round trips: BEGIN, lock, read the state, write the plan, COMMIT.

Counted in the process by ``Database.recording``: every statement sent, through SQLAlchemy's
engine (``before_cursor_execute``) or the driver lane, plus each BEGIN and COMMIT.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.clock import FrozenClock
from app.persistence.unit_of_work import Database
from tests.api_client import Api
from tests.db import Rows

MAX_RUN_ROUND_TRIPS = 5


def round_trips(app: Any) -> Any:
    """Statements, BEGINs and COMMITs sent by the app's database, on either path."""
    db: Database = app.state.services.db
    return db.recording()


def postgres_only(rows: Rows) -> None:
    if rows.engine.dialect.name != "postgresql":
        pytest.skip("round trips are counted on PostgreSQL; SQLite is in the process")


async def test_run_generator_takes_at_most_five_round_trips_on_postgres(
    api: Api, rows: Rows, app: Any
) -> None:
    postgres_only(rows)
    # given an account that has run once (connections and statements warmed up)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    # when
    with round_trips(app) as sent:
        run = await api.run(account_id, "TURBO", key="counted")
    # then
    assert run["account"]["creditsTotal"] == 960
    assert len(sent) <= MAX_RUN_ROUND_TRIPS, sent
    assert sent[0] == "BEGIN" and sent[-1] == "COMMIT"


async def test_a_run_that_records_renewals_and_spends_packs_is_still_five_round_trips(
    api: Api, rows: Rows, clock: FrozenClock, app: Any
) -> None:
    postgres_only(rows)
    # given an account with a pack, two renewals due, warmed up
    account_id = await api.subscribed_account()
    await api.buy(account_id)
    await api.run(account_id, "TURBO", key="warm")
    clock.advance(timedelta(days=62))
    # when
    with round_trips(app) as sent:
        run = await api.run(account_id, "ULTRA", key="counted")
    # then renewals and the spend were written, in at most five round trips
    assert run["account"]["creditsTotal"] == 1000 - 80
    assert len(sent) <= MAX_RUN_ROUND_TRIPS, sent
