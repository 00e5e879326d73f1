"""Cron instants of `schedule` rules, in the rule's time zone (croniter over zoneinfo-aware datetimes: a DST
change moves the UTC instant, never the wall-clock time)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter


def check_cron(expression: str) -> str:
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5:
        raise ValueError("cron expression must have five fields (minute hour day-of-month month day-of-week)")
    try:  # a valid expression that never fires (30 February) only shows when iterated
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"invalid cron expression: {exc}") from exc
    return expression


def next_fire(expression: str, timezone: str, after: datetime) -> datetime:
    """The first instant strictly after `after` at which the expression fires, in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    nxt = croniter(expression, local).get_next(datetime)
    assert isinstance(nxt, datetime)
    return nxt.astimezone(UTC)
