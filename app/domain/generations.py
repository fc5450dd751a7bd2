"""A generation's lifecycle, each step at most once.

QUEUED ──claim──▶ RUNNING ──complete──▶ SUCCEEDED
  │                  └──────fail──────▶ FAILED
  ├──fail (refused before it started)─▶ FAILED
  └──cancel─────────────────────────▶ CANCELED

A failed or cancelled run's held credits go back where they came from.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from app.domain.errors import InvalidTransition, TooManyActiveGenerations
from app.domain.model import GenerationStatus
from app.domain.records import Generation


class Finish(enum.StrEnum):
    """How a run ends, and the status it ends in."""

    COMPLETE = "completed"
    FAIL = "failed"
    CANCEL = "canceled"


# From which statuses each ending may happen: the one table of the lifecycle's last step.
ENDS_FROM: dict[Finish, frozenset[GenerationStatus]] = {
    Finish.COMPLETE: frozenset({GenerationStatus.RUNNING}),
    Finish.FAIL: frozenset({GenerationStatus.QUEUED, GenerationStatus.RUNNING}),
    Finish.CANCEL: frozenset({GenerationStatus.QUEUED}),
}
ENDS_IN: dict[Finish, GenerationStatus] = {
    Finish.COMPLETE: GenerationStatus.SUCCEEDED,
    Finish.FAIL: GenerationStatus.FAILED,
    Finish.CANCEL: GenerationStatus.CANCELED,
}
# Statuses whose holds were given back (the credits returned to their buckets).
RELEASED_STATUSES = frozenset({GenerationStatus.FAILED, GenerationStatus.CANCELED})
ACTIVE_STATUSES = frozenset({GenerationStatus.QUEUED, GenerationStatus.RUNNING})


def check_can_finish(generation: Generation, finish: Finish) -> GenerationStatus:
    """The status ``finish`` moves the generation to; refused from any other state."""
    if generation.status not in ENDS_FROM[finish]:
        raise InvalidTransition(generation, finish.value)
    return ENDS_IN[finish]


def check_room_for_another(active: int, limit: int) -> None:
    """A plan runs at most ``limit`` generations at once (0: no cap)."""
    if limit and active >= limit:
        raise TooManyActiveGenerations(limit, active)


def is_stale(
    status: GenerationStatus,
    created_at: datetime,
    started_at: datetime | None,
    now: datetime,
    timeout: timedelta,
) -> bool:
    """A job no worker finished in time: queued too long, or running too long."""
    if status is GenerationStatus.QUEUED:
        return now - created_at >= timeout
    if status is GenerationStatus.RUNNING and started_at is not None:
        return now - started_at >= timeout
    return False
