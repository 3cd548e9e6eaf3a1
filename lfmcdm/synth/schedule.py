"""Names of scheduled cohorts: one per scheduled day, whenever the run actually starts.

Why the *scheduled* start and not the clock: a run that starts late, is retried, or is re-run
for a missed day must produce (or resume) the cohort of the day it was scheduled for, and two
runs scheduled on different days must never share a name (the name seeds the plan).
"""

from __future__ import annotations

from datetime import datetime, timezone


def daily_cohort_name(base: str, scheduled_start: datetime | None = None) -> str:
    """``<base>-YYYYMMDD`` of ``scheduled_start`` in UTC (the deployments' schedule zone); now when None.

    A naive datetime is taken as UTC. None means "run by hand, not from a schedule": today (UTC).
    """
    when = scheduled_start or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return f"{base}-{when.astimezone(timezone.utc):%Y%m%d}"
