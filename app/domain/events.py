"""What happened, for whoever watches: raised inside a unit of work, delivered after commit.

DomainEvent
├── AccountChanged     an account's balances or subscription may have changed (live feeds)
├── GenerationUpdated  a generation was created or moved on (live feeds)
├── CreditsPosted      one ledger posting, for counters in this process only
└── PurchaseStatusChanged  a pack purchase moved to a new status, for counters
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.model import Bucket, LedgerKind, Tool


@dataclass(frozen=True, slots=True)
class AccountChanged:
    account_id: str


@dataclass(frozen=True, slots=True)
class GenerationUpdated:
    generation_id: str
    account_id: str


@dataclass(frozen=True, slots=True)
class CreditsPosted:
    kind: LedgerKind
    bucket: Bucket
    amount: int
    tool: Tool | None


@dataclass(frozen=True, slots=True)
class PurchaseStatusChanged:
    purchase_id: str
    provider: str
    status: str


LiveEvent = AccountChanged | GenerationUpdated
DomainEvent = LiveEvent | CreditsPosted | PurchaseStatusChanged


def live_events(events: list[DomainEvent]) -> list[LiveEvent]:
    """The events subscribers see, each once, in the order first raised."""
    unique: dict[LiveEvent, None] = {}
    for event in events:
        if isinstance(event, AccountChanged | GenerationUpdated):
            unique.setdefault(event)
    return list(unique)
