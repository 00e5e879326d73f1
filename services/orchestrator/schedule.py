"""When a schedule fires next: at `scheduled_time` in the site's time zone, daily/weekly/monthly.

Computed on local calendar dates, then converted to UTC, so DST changes move the UTC instant and not
the wall-clock time. A wall-clock time that does not exist on a spring-forward day resolves forward
(02:30 → 03:30), one that exists twice on a fall-back day takes the first occurrence. Monthly day 31
(or 29/30) lands on the last day of shorter months.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.orchestrator.config import SiteConfig


def _resolve_local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant of wall-clock `at` on `day` in `tz`, handling DST gaps and folds."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0)
    # In a gap the wall time does not exist: fold=0 reads it with the pre-transition offset, and the
    # round trip through UTC lands the same distance past the gap (02:30 → 03:30), which is what we want.
    return first.astimezone(UTC).astimezone(tz)


def _monthly_day(year: int, month: int, wanted: int) -> date:
    return date(year, month, min(wanted, calendar.monthrange(year, month)[1]))


def next_run_at(config: SiteConfig, after: datetime) -> datetime:
    """The first scheduled instant strictly after `after` (timezone-aware), in UTC."""
    tz = ZoneInfo(config.timezone)
    local_after = after.astimezone(tz)
    day = local_after.date()
    for _ in range(400):  # at most ~13 months of candidate days
        if config.frequency == "daily":
            candidate_day = day
        elif config.frequency == "weekly":
            candidate_day = day + timedelta(days=(config.weekly_day - day.weekday()) % 7)
        else:
            candidate_day = _monthly_day(day.year, day.month, config.monthly_day)
            if candidate_day < day:
                nxt = day.replace(day=1) + timedelta(days=32)
                candidate_day = _monthly_day(nxt.year, nxt.month, config.monthly_day)
        instant = _resolve_local(candidate_day, config.scheduled_time, tz)
        if instant > after:
            return instant.astimezone(UTC)
        day = candidate_day + timedelta(days=1)
    raise AssertionError("no schedule instant found within 400 days")  # pragma: no cover
