"""Credit adjustments by support: a bonus lot granted, or credits taken back, with a reason.

A positive amount is a bonus lot in the BONUS bucket. It is spent after the subscription's
credits and before packs (``spending.allocate``) and expires at its own date: the one support
gave, or else the end of the cycle in force (the next renewal, as packs). The date is fixed
when the lot is granted; later plan changes do not move it. A negative amount is a correction
taken in spend order, refused whole when the account holds less.

The writes themselves are planned by the aggregate (``aggregate.plan_adjustment``); the rules
of the input and of the bonus bucket are here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from app.domain.errors import InvalidInput
from app.domain.holds import bonus_is_live
from app.domain.spending import PackLot

MAX_REASON_LENGTH = 500
# GraphQL's Int: every balance and the total must stay answerable.
MAX_CREDITS = 2**31 - 1


def validate_amount(amount: int) -> int:
    if amount == 0 or not -MAX_CREDITS <= amount <= MAX_CREDITS:
        raise InvalidInput(
            "amount",
            f"amount must be a non-zero whole number of credits, -{MAX_CREDITS} to "
            f"{MAX_CREDITS}: positive grants a bonus, negative takes credits back.",
        )
    return amount


def validate_reason(reason: str) -> str:
    """Support says why, for the ledger: 1 to 500 characters, not only blanks."""
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput("reason", f"reason must be 1 to {MAX_REASON_LENGTH} characters.")
    return reason


def validate_expiry(amount: int, expires_at: datetime | None) -> datetime | None:
    """The requested expiry as a UTC instant; only a bonus (positive amount) has one."""
    if expires_at is None:
        return None
    if amount < 0:
        raise InvalidInput("expiresAt", "Only a bonus (a positive amount) has an expiry.")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise InvalidInput("expiresAt", "expiresAt needs a UTC offset.")
    try:
        return expires_at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("expiresAt", "expiresAt is out of range.") from None


def bonus_expiry(
    requested: datetime | None, cycle_ends_at: datetime | None, now: datetime
) -> datetime:
    """When a bonus granted at ``now`` expires: the date asked for, else the next renewal."""
    if requested is None:
        if cycle_ends_at is None:
            raise InvalidInput(
                "expiresAt",
                "The account has no subscription cycle for the bonus to expire with: give "
                "expiresAt.",
            )
        return cycle_ends_at
    if requested <= now:
        raise InvalidInput("expiresAt", "expiresAt must be in the future.")
    return requested


def check_total_after(total: int, amount: int) -> None:
    """A bonus may not take the account's total beyond what clients can be told."""
    if total + amount > MAX_CREDITS:
        raise InvalidInput(
            "amount",
            f"A bonus of {amount} would take creditsTotal beyond {MAX_CREDITS}.",
        )


def bonus_at(lots: Iterable[PackLot], now: datetime) -> tuple[int, datetime | None]:
    """The bonus credits live at ``now`` and when the first of them expires."""
    live = [lot for lot in lots if lot.remaining > 0 and bonus_is_live(lot.expires_at, now)]
    return sum(lot.remaining for lot in live), min((lot.expires_at for lot in live), default=None)
