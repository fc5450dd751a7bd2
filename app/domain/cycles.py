"""Monthly credit cycles, counted in calendar months from the subscription's anchor.

Cycle k starts at ``anchor + k months``, always computed from the anchor (never from the
previous cycle), so a Jan 31 anchor gives Feb 28/29 and then Mar 31 again. Months are
counted in UTC whatever offset the anchor was given in: 2027-01-30T20:00-05:00 is Jan 31 in
UTC, so it renews on Feb 28 01:00Z (not Mar 1, as counting in its own offset would say).
"""

from __future__ import annotations

from datetime import UTC, datetime

from dateutil.relativedelta import relativedelta


def _require_utc(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("credit cycles need timezone-aware datetimes")


def cycle_start(anchor: datetime, k: int) -> datetime:
    """Start of cycle ``k`` (k >= 0) of a subscription anchored at ``anchor``."""
    _require_utc(anchor)
    return anchor.astimezone(UTC) + relativedelta(months=k)


def cycle_index_at(anchor: datetime, moment: datetime) -> int:
    """Index of the cycle that contains ``moment`` (``moment`` >= ``anchor``)."""
    _require_utc(anchor)
    _require_utc(moment)
    if moment < anchor:
        raise ValueError("moment precedes the anchor")
    k = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
    while k > 0 and cycle_start(anchor, k) > moment:
        k -= 1
    while cycle_start(anchor, k + 1) <= moment:
        k += 1
    return k


def cycle_end(anchor: datetime, k: int) -> datetime:
    """End of cycle ``k``: the moment of the next monthly renewal."""
    return cycle_start(anchor, k + 1)
