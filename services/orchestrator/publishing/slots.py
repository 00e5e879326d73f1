"""The slot calculation: when each approved draft of a site is published. Pure (no I/O); the caller holds the
site's lock and passes what is already booked.

Modes (`scheduling_mode`):
* `immediate`  — now + i·spacing (60 s), i = 0, 1, ...: the first instant at least one spacing away from
  every booked instant. Publish days, windows and targets do not apply: immediate means now.
* `time_slots` — the wall-clock times of `publish_time_slots` on the allowed days.
* `stagger`    — every `stagger_interval_minutes` from `stagger_start_time` to `stagger_end_time` (both
  included) on the allowed days.

Day modes take the first free slot strictly after now and at most HORIZON (90 days) ahead; a slot is free when
no booked instant is exactly on it. Wall-clock times become instants the way the run schedules do
(services.orchestrator.schedule): a time inside a spring-forward gap moves forward by the gap (02:30 → 03:30),
a time inside an autumn fold takes its first occurrence; two wall times that land on one instant are one slot.

Soft targets (day modes): a slot whose local day already holds `daily_publish_target` bookings, or whose ISO
week holds `weekly_publish_target`, or whose month holds `monthly_publish_target`, is passed over while any
free slot inside the horizon lies in a day, week and month under their targets. Only when there is none is
the earliest free slot taken regardless: targets spread the schedule, they never block it. Bookings count
where they are booked (scheduled, being published or published), in the site's time zone.

The hard limit: a draft that would make more than `max_scheduled_queue` drafts wait is not scheduled, and
neither is one without a free slot; each gets the reason (`Unschedulable`).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.orchestrator.publishing.settings import WEEKDAYS, PublishingSettings

HORIZON = timedelta(days=90)
IMMEDIATE_SPACING = timedelta(seconds=60)
ReasonCode = Literal["queue_full", "no_allowed_day", "no_free_slot"]


@dataclass(frozen=True)
class Unschedulable:
    code: ReasonCode
    reason: str


def resolve_local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `tz` (gap: forward by the gap; fold: first occurrence)."""
    # fold=0 reads a wall time in a gap with the offset before the change; the round trip through UTC then
    # lands it the gap's length later, which is the wall time "moved forward".
    return datetime.combine(day, at).replace(tzinfo=tz, fold=0).astimezone(UTC)


def wall_times(settings: PublishingSettings) -> list[time]:
    """The wall-clock times of one publishing day in the day modes."""
    if settings.scheduling_mode == "time_slots":
        return list(settings.publish_time_slots)
    start = settings.stagger_start_time.hour * 60 + settings.stagger_start_time.minute
    end = settings.stagger_end_time.hour * 60 + settings.stagger_end_time.minute
    return [time(m // 60, m % 60) for m in range(start, end + 1, settings.stagger_interval_minutes)]


@dataclass
class Book:
    """What the site's schedule holds: booked instants, and how many fall on each local day, week and month."""

    tz: ZoneInfo
    instants: list[datetime] = field(default_factory=list)  # sorted, UTC
    exact: set[datetime] = field(default_factory=set)
    days: Counter[date] = field(default_factory=Counter)
    weeks: Counter[tuple[int, int]] = field(default_factory=Counter)
    months: Counter[tuple[int, int]] = field(default_factory=Counter)

    @classmethod
    def of(cls, tz: ZoneInfo, booked: Iterable[datetime]) -> Book:
        book = cls(tz)
        for instant in booked:
            book.add(instant)
        return book

    def add(self, instant: datetime) -> None:
        instant = instant.astimezone(UTC)
        bisect.insort(self.instants, instant)
        self.exact.add(instant)
        local = instant.astimezone(self.tz).date()
        self.days[local] += 1
        self.weeks[_week(local)] += 1
        self.months[(local.year, local.month)] += 1

    def latest_near(self, instant: datetime, spacing: timedelta) -> datetime | None:
        """The latest booked instant less than `spacing` away from `instant`, or None."""
        i = bisect.bisect_left(self.instants, instant + spacing) - 1
        return self.instants[i] if i >= 0 and self.instants[i] > instant - spacing else None

    def over_target(self, day: date, settings: PublishingSettings) -> bool:
        return (
            self.days[day] >= settings.daily_publish_target
            or self.weeks[_week(day)] >= settings.weekly_publish_target
            or self.months[(day.year, day.month)] >= settings.monthly_publish_target
        )


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return iso.year, iso.week


def _day_slots(settings: PublishingSettings, tz: ZoneInfo, now: datetime) -> Iterator[tuple[datetime, date]]:
    """Every slot of the day modes after `now` and inside the horizon, in time order, with its local day."""
    end = now + HORIZON
    times = wall_times(settings)
    allowed = settings.weekdays
    day = now.astimezone(tz).date()
    while day <= end.astimezone(tz).date():
        if day.weekday() in allowed:
            # A gap can make a later wall time an earlier instant than a moved one, and two the same: sort, dedupe.
            for instant in sorted({resolve_local(day, t, tz) for t in times}):
                if now < instant <= end:
                    yield instant, day
        day += timedelta(days=1)


class _Lazy:
    """The candidate slots of one planning call, produced on demand and kept for the next draft's scan."""

    def __init__(self, source: Iterator[tuple[datetime, date]]) -> None:
        self._source = source
        self._seen: list[tuple[datetime, date]] = []

    def __iter__(self) -> Iterator[tuple[datetime, date]]:
        yield from self._seen
        for item in self._source:
            self._seen.append(item)
            yield item


@dataclass
class Planner:
    """Plans slots for a site's drafts one after another, each one booked before the next is planned."""

    settings: PublishingSettings
    timezone: str
    now: datetime
    booked: Iterable[datetime] = ()
    queued: int = 0  # drafts waiting in the schedule now (state scheduled)
    spacing: timedelta = IMMEDIATE_SPACING

    def __post_init__(self) -> None:
        self._tz = ZoneInfo(self.timezone)
        self.now = self.now.astimezone(UTC)
        self._book = Book.of(self._tz, self.booked)
        self._slots = _Lazy(_day_slots(self.settings, self._tz, self.now))
        self._none_left: Unschedulable | None = None

    def next(self) -> datetime | Unschedulable:
        """The next draft's slot (booked), or why it gets none."""
        limit = self.settings.max_scheduled_queue
        if self.queued >= limit:
            return Unschedulable(
                "queue_full", f"queue full: {self.queued} drafts are scheduled (max_scheduled_queue {limit})"
            )
        if self._none_left is not None:  # nothing was booked since: the next draft finds no slot either
            return self._none_left
        found = self._immediate() if self.settings.scheduling_mode == "immediate" else self._day_mode()
        if isinstance(found, datetime):
            self._book.add(found)
            self.queued += 1
        else:
            self._none_left = found
        return found

    def plan(self, count: int) -> list[datetime | Unschedulable]:
        return [self.next() for _ in range(count)]

    def _immediate(self) -> datetime | Unschedulable:
        step = max(self.spacing, timedelta(seconds=1))
        candidate = self.now
        while candidate <= self.now + HORIZON:
            blocking = self._book.latest_near(candidate, step)
            if blocking is None:
                return candidate
            # Jump to the first point of the grid (now + i·step) a whole step after the blocking booking.
            candidate = self.now + step * math.ceil((blocking + step - self.now) / step)
        return Unschedulable("no_free_slot", f"no free slot in the next {HORIZON.days} days")

    def _day_mode(self) -> datetime | Unschedulable:
        if not self.settings.publish_days:
            return Unschedulable("no_allowed_day", f"no allowed day in {HORIZON.days} days (publish_days is empty)")
        first_free: datetime | None = None
        for instant, day in self._slots:
            if instant in self._book.exact:
                continue
            if not self._book.over_target(day, self.settings):
                return instant
            first_free = first_free or instant
        if first_free is not None:  # every free slot is in a full day, week or month: targets never block
            return first_free
        days = ", ".join(d for d in WEEKDAYS if d in self.settings.publish_days)
        return Unschedulable(
            "no_free_slot", f"no free slot in the next {HORIZON.days} days (every slot on {days} is taken)"
        )
