"""Relay-style connections with opaque keyset cursors (stable while rows are added)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

import strawberry

from graphql_schema.errors import bad_input

T = TypeVar("T")
N = TypeVar("N")


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
        raise bad_input("after is not a cursor from this connection.", "after") from None
    if not raw.startswith(prefix):
        raise bad_input("after is not a cursor from this connection.", "after")
    return raw[len(prefix) :]


def ledger_cursor(entry_id: int) -> str:
    return _encode(f"ledger:{entry_id}")


def decode_ledger_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    value = _decode(cursor, "ledger:")
    if not value.isdigit():
        raise bad_input("after is not a cursor from this connection.", "after")
    return int(value)


def generation_cursor(created_at: datetime, generation_id: str) -> str:
    return _encode(f"generation:{created_at.isoformat()}|{generation_id}")


def decode_generation_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    created, _, generation_id = _decode(cursor, "generation:").partition("|")
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        raise bad_input("after is not a cursor from this connection.", "after") from None
    if moment.tzinfo is None or not generation_id:
        raise bad_input("after is not a cursor from this connection.", "after")
    return moment, generation_id


def purchase_cursor(created_at: datetime, purchase_id: str) -> str:
    return _encode(f"purchase:{created_at.isoformat()}|{purchase_id}")


def decode_purchase_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    created, _, purchase_id = _decode(cursor, "purchase:").partition("|")
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        raise bad_input("after is not a cursor from this connection.", "after") from None
    if moment.tzinfo is None or not purchase_id:
        raise bad_input("after is not a cursor from this connection.", "after")
    return moment, purchase_id
