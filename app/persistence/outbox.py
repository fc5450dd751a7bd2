"""The webhook outbox: event rows written in the transaction of their change, each fanned out
to one delivery per endpoint that takes its type (in the same transaction, so an endpoint
sees every event committed after it was created, in commit order per account).

The ledger entries an event names get their ids only when the write inserts them: the row
keeps the entries' positions in its payload and the write's entry ids beside it, and
:func:`body_of` puts the two together when the event is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.webhooks import DeliveryStatus, Entry, OutgoingEvent
from app.persistence.tables import WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow

events_t: sa.Table = WebhookEventRow.__table__  # type: ignore[attr-defined]
deliveries_t: sa.Table = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]
endpoints_t: sa.Table = WebhookEndpointRow.__table__  # type: ignore[attr-defined]

PENDING, DELIVERED, FAILED = (s.value for s in DeliveryStatus)


def new_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    type: str
    account_id: str
    payload: str
    created_at: datetime


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event_rows(
    events: Sequence[OutgoingEvent], entries: Sequence[Entry], now: datetime
) -> list[EventRow]:
    """The outbox rows of ``events`` written at ``now`` (the write's instant, just before its
    commit); entries are named by position until sent."""
    by_position = {e.position: e for e in entries}
    rows = []
    for event in events:
        data: dict[str, Any] = {
            "accountId": event.account_id,
            "reason": event.reason,
            "balances": {
                "subscription": event.balances.subscription,
                "pack": event.balances.pack,
                "bonus": event.balances.bonus,
                "total": event.balances.total,
            },
            **event.data,
            "ledgerEntries": [_entry(by_position[p]) for p in event.entries],
        }
        body = {"type": event.type.value, "timestamp": _iso(event.occurred_at), "data": data}
        rows.append(
            EventRow(
                new_event_id(),
                event.type.value,
                event.account_id,
                orjson.dumps(body).decode(),
                now,
            )
        )
    return rows


def _entry(entry: Entry) -> dict[str, Any]:
    return {
        "position": entry.position,
        "kind": entry.kind.value,
        "bucket": entry.bucket.value,
        "amount": entry.amount,
        "balanceAfter": entry.balance_after,
        "referenceType": str(entry.reference_type),
        "referenceId": entry.reference_id,
        "lotId": entry.lot_id,
        "occurredAt": _iso(entry.occurred_at),
    }


def body_of(payload: str, ledger_entry_ids: str | None) -> str:
    """The JSON body as sent: each entry's position replaced by its ledger id."""
    ids = [int(i) for i in ledger_entry_ids.split(",")] if ledger_entry_ids else []
    body = orjson.loads(payload)
    data = body["data"]
    data["ledgerEntries"] = [
        {
            "id": str(ids[entry["position"]]) if entry["position"] < len(ids) else None,
            **{k: v for k, v in entry.items() if k != "position"},
        }
        for entry in data.get("ledgerEntries", [])
    ]
    return orjson.dumps(body).decode()


def type_filter(event_types: Sequence[str]) -> str:
    """How an endpoint's event types are stored: ",a,b," ("" takes every type)."""
    return f",{','.join(sorted(set(event_types)))}," if event_types else ""


def takes(stored_filter: str, event_type: str) -> bool:
    return not stored_filter or f",{event_type}," in stored_filter


# PostgreSQL: the CTEs a write plan's one statement adds (see plans._PG_WRITE). ``led`` is
# the ledger insert, RETURNING the ids in posting order; ``acc`` the account row's update,
# which each part is joined with (nothing is written unless it wrote).
PG_OUTBOX_CTES = """
hook AS (
  INSERT INTO webhook_events (id, account_id, event_type, payload, ledger_entry_ids, created_at)
  SELECT w.id, CAST(:account_id AS varchar), w.type, w.payload,
    (SELECT string_agg(CAST(led.id AS text), ',' ORDER BY led.id) FROM led), w.at
  FROM unnest(CAST(:w_id AS varchar[]), CAST(:w_type AS varchar[]), CAST(:w_payload AS text[]),
    CAST(:w_at AS timestamptz[])) AS w(id, type, payload, at)
  CROSS JOIN acc
),
fan AS (
  INSERT INTO webhook_deliveries (event_id, endpoint_id, account_id, event_type, status,
    attempts, next_attempt_at, created_at)
  SELECT w.id, ep.id, CAST(:account_id AS varchar), w.type, 'PENDING', 0,
    CAST(:now AS timestamptz), CAST(:now AS timestamptz)
  FROM unnest(CAST(:w_id AS varchar[]), CAST(:w_type AS varchar[]))
    WITH ORDINALITY AS w(id, type, n)
  CROSS JOIN acc
  JOIN webhook_endpoints ep ON ep.enabled
    AND (ep.event_types = '' OR strpos(ep.event_types, ',' || w.type || ',') > 0)
  ORDER BY w.n, ep.id
)
"""


def pg_parameters(rows: Sequence[EventRow]) -> dict[str, Any]:
    return {
        "w_id": [r.id for r in rows],
        "w_type": [r.type for r in rows],
        "w_payload": [r.payload for r in rows],
        "w_at": [r.created_at for r in rows],
    }


_ENDPOINTS_TAKING = sa.select(endpoints_t.c.id, endpoints_t.c.event_types).where(
    endpoints_t.c.enabled.is_(True)
)


async def insert_events(
    conn: AsyncConnection,
    rows: Sequence[EventRow],
    ledger_ids: Sequence[int],
    now: datetime,
) -> None:
    """The outbox rows and their deliveries, as ordinary statements (SQLite, ORM writes)."""
    if not rows:
        return
    ids = ",".join(str(i) for i in ledger_ids) or None
    await conn.execute(
        sa.insert(events_t),
        [
            {
                "id": r.id,
                "account_id": r.account_id,
                "event_type": r.type,
                "payload": r.payload,
                "ledger_entry_ids": ids,
                "created_at": r.created_at,
            }
            for r in rows
        ],
    )
    endpoints = (await conn.execute(_ENDPOINTS_TAKING)).all()
    deliveries = [
        {
            "event_id": r.id,
            "endpoint_id": endpoint.id,
            "account_id": r.account_id,
            "event_type": r.type,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for r in rows
        for endpoint in sorted(endpoints, key=lambda e: str(e.id))
        if takes(endpoint.event_types, r.type)
    ]
    # One statement per delivery, in order: the ids keep the events' order per account.
    for delivery in deliveries:
        await conn.execute(sa.insert(deliveries_t), delivery)
