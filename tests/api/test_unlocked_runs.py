"""A run on PostgreSQL goes without the account's lock, and is then written only if the
account has not moved since its state was read; else it is written once, under the lock.

A process's runs of one account take turns (app/persistence/contention.py); each reads its
state in one autocommit statement and writes its plan in another, which updates the account
row only at the version it read (app/persistence/plans.py). Every holder of the account's
lock moves the version, whatever path it takes: a run in another process, a pack's purchase
(the ORM's lock), a generation's end (its owner's lock). Here each of them moves the account
between a run's read and its write, and the run must then be written exactly once, from the
state as the other writer left it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.persistence import plans
from app.persistence.unit_of_work import Database
from tests.api_client import Api, Worker
from tests.conftest import ApiFactory
from tests.db import Rows, sent_statements

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def db_of(app: Any) -> Database:
    db: Database = app.state.services.db
    return db


def after_the_first_state_read(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]
) -> list[bool]:
    """Run ``meanwhile`` once, right after the next state read with the account's row (an
    unlocked run's read); the list it returns holds True once it has run."""
    original = plans.read_account_state
    done: list[bool] = []

    async def read_then_move(*args: Any, **kwargs: Any) -> Any:
        found = await original(*args, **kwargs)
        if not done:
            done.append(True)
            await meanwhile()
        return found

    monkeypatch.setattr(plans, "read_account_state", read_then_move)
    return done


WRITERS = ["a run in another process", "a pack bought", "a run failed"]


@on_postgres
@pytest.mark.parametrize("writer", WRITERS)
async def test_a_run_whose_account_moved_after_its_read_is_written_once_under_the_lock(
    api: Api,
    rows: Rows,
    app: Any,
    make_api: ApiFactory,
    monkeypatch: pytest.MonkeyPatch,
    writer: str,
) -> None:
    # given an account with a claimed run of 20 (1000 - 20 = 980), warmed up
    worker = Worker(api)
    account_id = await api.subscribed_account()
    earlier = await api.run(account_id, "TURBO", key="earlier")
    await worker.claim(limit=100)
    change = {"a run in another process": -38, "a pack bought": +500, "a run failed": +20}
    marker = "-- the other writer is done --"
    # (a second gateway on the same database: its runs do not take this one's turns)
    elsewhere = await make_api()
    await elsewhere.balances(account_id)  # (warmed up)
    moves: dict[str, Callable[[], Awaitable[Any]]] = {
        "a run in another process": lambda: elsewhere.run(account_id, "PRO", key="other"),
        "a pack bought": lambda: api.buy(account_id),
        "a run failed": lambda: worker.fail(earlier["generation"]["id"]),
    }
    with sent_statements(app, transactions=True) as sent:

        async def meanwhile() -> None:
            await moves[writer]()
            sent.append(marker)

        moved = after_the_first_state_read(monkeypatch, meanwhile)
        # when a run (80) reads the state, then the other writer moves the account
        run = await api.run(account_id, "ULTRA", key="counted")
    # then the run was written once, after the other writer, from the state it left
    assert moved == [True]
    assert run["__typename"] == "GeneratorRun"
    assert run["account"]["creditsTotal"] == 980 + change[writer] - 80
    assert (await api.balances(account_id))["creditsTotal"] == 980 + change[writer] - 80
    spent = [
        e
        for e in await rows.ledger(account_id)
        if e["reference_id"] == run["generation"]["id"] and e["kind"] == "SPEND"
    ]
    assert sum(e["amount"] for e in spent) == -80
    holds = await rows.all(
        "SELECT amount FROM holds WHERE generation_id = :g", g=run["generation"]["id"]
    )
    assert sum(h["amount"] for h in holds) == 80
    # and the unlocked write wrote nothing; the run went again under the lock (the other
    # process's statements are not in this one's record)
    after = sent[sent.index(marker) + 1 :]
    assert after[0].startswith("WITH acc AS")
    assert after[1].startswith("BEGIN; UPDATE accounts SET version"), after
    assert after[2].startswith("SELECT") and after[3].startswith("WITH acc AS")
    assert after[4:] == ["COMMIT"]
    generations = await rows.all(
        "SELECT id FROM generations WHERE account_id = :a AND tool = 'ULTRA'", a=account_id
    )
    assert [g["id"] for g in generations] == [run["generation"]["id"]]


@on_postgres
async def test_a_run_with_a_key_replayed_meanwhile_answers_the_first_run(
    api: Api, rows: Rows, make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an account, and the same run sent again to another process while the first is
    # between its read and its write (a client retrying at once, elsewhere)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    answers: list[Any] = []
    elsewhere = await make_api()

    async def the_retry() -> None:
        answers.append(await elsewhere.run(account_id, "ULTRA", key="twice"))

    after_the_first_state_read(monkeypatch, the_retry)
    # when the first goes on
    first = await api.run(account_id, "ULTRA", key="twice")
    # then one run was made: the retry made it (under the lock), the first answers with it
    (retry,) = answers
    assert first["generation"]["id"] == retry["generation"]["id"]
    assert first["account"]["creditsTotal"] == 1000 - 20 - 80
    ultra = await rows.all(
        "SELECT id FROM generations WHERE account_id = :a AND tool = 'ULTRA'", a=account_id
    )
    assert len(ultra) == 1


@on_postgres
async def test_a_replayed_run_reads_its_generation_without_a_transaction(
    api: Api, app: Any
) -> None:
    # given a run made
    account_id = await api.subscribed_account()
    made = await api.run(account_id, "TURBO", key="once")
    # when it is sent again
    with sent_statements(app, transactions=True) as sent:
        again = await api.run(account_id, "TURBO", key="once")
    # then the state and the generation were read, nothing written, no transaction opened
    assert again["generation"]["id"] == made["generation"]["id"]
    assert len(sent) == 2 and all(s.startswith("SELECT") for s in sent), sent


@on_postgres
async def test_a_refused_run_reads_without_a_transaction_and_changes_nothing(
    api: Api, rows: Rows, app: Any
) -> None:
    # given an account with 1000 credits, 960 of them spent by twelve PRO runs
    account_id = await api.subscribed_account()
    for i in range(12):
        await api.run(account_id, "ULTRA", key=f"r{i}")
    before = await rows.account(account_id)
    # when a run costs more than is left
    with sent_statements(app, transactions=True) as sent:
        refused = await api.run(account_id, "ULTRA", key="too-much")
    # then it is refused from the one read, and nothing moved
    assert refused["__typename"] == "InsufficientCredits"
    assert (refused["required"], refused["available"]) == (80, 40)
    assert len(sent) == 1 and sent[0].startswith("SELECT"), sent
    assert await rows.account(account_id) == before


@pytest.mark.parametrize("database_url", ["postgres", "sqlite"], indirect=True)
async def test_runs_go_unlocked_only_on_postgres_on_the_lane_and_with_the_switch_on(
    make_api: ApiFactory, database_url: str
) -> None:
    # given the default gateway, and one with the switch off or without the lane
    cases: dict[str, dict[str, Any]] = {
        "default": {},
        "switch off": {"unlocked_runs": False},
        "no lane": {"driver_lane": False},
    }
    for name, changes in cases.items():
        api = await make_api(**changes)
        account_id = await api.subscribed_account()
        await api.run(account_id, "TURBO", key="warm")
        # when a run is made
        with sent_statements(api.app, transactions=True) as sent:
            run = await api.run(account_id, "TURBO", key="counted")
        # then only the default gateway on PostgreSQL made it without a transaction
        assert run["account"]["creditsTotal"] == 960
        unlocked = database_url.startswith("postgresql") and name == "default"
        assert (db_of(api.app).contention is not None) is unlocked, name
        assert ("COMMIT" not in sent) is unlocked, (name, sent)


@on_postgres
async def test_runs_of_one_account_at_once_in_one_process_each_go_unlocked_in_turn(
    api: Api, rows: Rows, app: Any
) -> None:
    # given an account (warmed up)
    account_id = await api.subscribed_account()
    await api.run(account_id, "TURBO", key="warm")
    # when ten runs of it arrive at once
    with sent_statements(app, transactions=True) as sent:
        runs = await asyncio.gather(
            *(api.run(account_id, "TURBO", key=f"burst-{i}") for i in range(10))
        )
    # then all were made, one after the other, each in its two statements, none locked
    assert all(r["__typename"] == "GeneratorRun" for r in runs)
    assert sorted(r["account"]["creditsTotal"] for r in runs) == [
        1000 - 20 * (n + 2) for n in reversed(range(10))
    ]
    assert (await api.balances(account_id))["creditsTotal"] == 1000 - 20 * 11
    assert len(sent) == 20 and not any(s.startswith(("BEGIN", "COMMIT")) for s in sent)
    assert [s.split(maxsplit=1)[0] for s in sent] == ["SELECT", "WITH"] * 10
    contention = db_of(app).contention
    assert contention is not None and contention.queued(account_id) == 0
