"""Relay-style connections with opaque keyset cursors (stable while rows are added)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

import strawberry

from graphql_schema.errors import bad_input

T = TypeVar("T")
N = TypeVar("N")

# What a cursor of ours can hold: a BIGINT id; an instant every database stores, in UTC;
# a generation id (a UUID, printable). Anything else was forged and is refused here, before
# a database or ``int`` gets to fail on it unexpectedly.
_LEDGER_ID = re.compile(r"[0-9]{1,19}")
MAX_LEDGER_ID = 2**63 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_ID_LENGTH = 64


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def connection(
    items: Sequence[N], has_next: bool, node: Callable[[N], T], cursor: Callable[[N], str]
) -> Connection[T]:
    edges = [Edge(cursor=cursor(item), node=node(item)) for item in items]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
    )


def _encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode(cursor: str, prefix: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _not_a_cursor() from None
    if not raw.startswith(prefix):
        raise _not_a_cursor()
    return raw[len(prefix) :]


def ledger_cursor(entry_id: int) -> str:
    return _encode(f"ledger:{entry_id}")


def decode_ledger_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    value = _decode(cursor, "ledger:")
    # ``str.isdigit`` takes "²" and "٣"; only ASCII digits, at most a BIGINT.
    if not _LEDGER_ID.fullmatch(value) or int(value) > MAX_LEDGER_ID:
        raise _not_a_cursor()
    return int(value)


def generation_cursor(created_at: datetime, generation_id: str) -> str:
    return _encode(f"generation:{created_at.isoformat()}|{generation_id}")


def decode_generation_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    return _decode_timestamped(cursor, "generation:")


def purchase_cursor(created_at: datetime, purchase_id: str) -> str:
    return _encode(f"purchase:{created_at.isoformat()}|{purchase_id}")


def decode_purchase_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    return _decode_timestamped(cursor, "purchase:")


def _decode_timestamped(cursor: str | None, prefix: str) -> tuple[datetime, str] | None:
    """A (created_at, id) keyset position, refused unless it could have come from us."""
    if cursor is None:
        return None
    created, _, row_id = _decode(cursor, prefix).partition("|")
    try:
        moment = datetime.fromisoformat(created)
        # An offset near the ends of the calendar overflows in conversion (+14:00 on 0001).
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    except (ValueError, OverflowError):
        raise _not_a_cursor() from None
    if (
        moment.tzinfo is None
        or not EARLIEST <= moment < LATEST
        or not row_id
        or len(row_id) > MAX_ID_LENGTH
        or not row_id.isprintable()  # NUL, which PostgreSQL cannot take
    ):
        raise _not_a_cursor()
    return moment, row_id


def _not_a_cursor() -> Exception:
    return bad_input("after is not a cursor from this connection.", "after")
