"""A generation's lifecycle: QUEUED → RUNNING → SUCCEEDED | FAILED, each step at most once."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.domain.errors import InvalidTransition
from app.domain.model import GenerationStatus
from app.domain.records import Generation


def check_can_finish(generation: Generation, action: str) -> None:
    """Only a claimed (RUNNING) generation can be completed or failed, and only once."""
    if generation.status is not GenerationStatus.RUNNING:
        raise InvalidTransition(generation, action)


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
