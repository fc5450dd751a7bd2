"""When time alone next changes what an account looks like."""

from __future__ import annotations

from datetime import datetime

from app.domain.accounts import AccountView


def next_change_at(view: AccountView, now: datetime) -> datetime | None:
    """The next renewal, pack or bonus expiry or end of a cancelled plan after ``now``, if any.

    Reads project renewals (see ``wallet_at``), so reading the account again at this moment
    shows the change without anything being written.
    """
    ends_at = view.subscription.terms.ends_at() if view.subscription else None
    moments = [
        m
        for m in (
            view.next_renewal_at,
            view.pack_expires_at,
            view.bonus_expires_at,
            ends_at,
        )
        if m
    ]
    upcoming = [m for m in moments if m > now]
    return min(upcoming, default=None)
