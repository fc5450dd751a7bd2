"""What happened, for whoever watches: raised inside a unit of work, delivered after commit.

DomainEvent
├── AccountChanged     an account's balances or subscription may have changed (live feeds)
├── GenerationUpdated  a generation was created or moved on (live feeds)
└── CreditsPosted      one ledger posting, for counters in this process only
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


LiveEvent = AccountChanged | GenerationUpdated
DomainEvent = LiveEvent | CreditsPosted


def live_events(events: list[DomainEvent]) -> list[LiveEvent]:
    """The events subscribers see, each once, in the order first raised."""
    unique: dict[LiveEvent, None] = {}
    for event in events:
        if isinstance(event, AccountChanged | GenerationUpdated):
            unique.setdefault(event)
    return list(unique)
