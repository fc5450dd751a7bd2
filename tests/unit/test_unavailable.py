"""Which driver errors say "the database is not there": the boundary's table, case by case."""

from __future__ import annotations

import asyncpg

from app.persistence.unavailable import is_unavailable


def test_a_statement_sent_while_asyncpg_discards_a_servers_goodbye_is_unavailable() -> None:
    # given the error asyncpg raises when a statement comes while it discards a message
    # that reached an idle connection (the server terminating it under a failover)
    error = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    # then it is the database that is not there, not an unexpected error
    assert is_unavailable(error)


def test_other_internal_client_errors_stay_unexpected() -> None:
    # a connection used by two operations at once (a bug of ours) is not the database's
    error = asyncpg.InternalClientError(
        "cannot switch to state 12; another operation (15) is in progress"
    )
    assert not is_unavailable(error)
