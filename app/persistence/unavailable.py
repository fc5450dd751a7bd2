"""Which driver errors mean "the database is not there" rather than "the request is wrong".

A connection refused, reset or closed under a transaction, a server shutting down or still
recovering, and a server that is no longer the primary (a failover: it is read-only now)
say nothing about the request. The unit of work turns them into the domain's
``DatabaseUnavailable`` at one boundary, so a client reads "try again" (with its
idempotency key) and never an unexpected error or a wrong answer.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

# SQLSTATEs: 08 connection exception; 57P01 admin shutdown, 57P02 crash shutdown, 57P03
# cannot connect now (starting or in recovery); 25006 read-only transaction (a standby).
UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "25006")


def is_unavailable(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_unavailable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _says_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError | asyncpg.exceptions.TargetServerAttributeNotMatched):
        return True  # refused, reset, timed out; or no host is the primary (yet)
    if nothing_sent(error):
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(UNAVAILABLE_STATES)


def nothing_sent(error: BaseException) -> bool:
    """Whether the driver refused the call before sending it: a connection it already knew
    closed, or one the server ended while it sat idle (a node shut down in a failover sends
    its backends a FATAL error), whose goodbye asyncpg is still reading when the connection
    is next used. Only then is a statement that may have started waiting or working at the
    server known not to have; either way the database is not there."""
    if isinstance(error, asyncpg.InterfaceError) and "connection is closed" in str(error):
        return True
    return isinstance(error, asyncpg.InternalClientError) and "is in progress" in str(error)
