"""Publishing settings of a site (the IGNY8 model, names and defaults as issue 14 fixes them).

All times are wall-clock times in the site's time zone (the site config's `timezone`). The daily, weekly and
monthly targets are soft: they spread the schedule and never block it; `max_scheduled_queue` is the only
hard limit. `PublishingSettingsPatch` validates API updates: unknown fields, bad days or times, an empty
stagger window → 422 naming the field; the merged result is validated as a whole.
"""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SchedulingMode = Literal["time_slots", "stagger", "immediate"]
MAX_QUEUE = 10_000
MAX_TARGET = 100_000
MAX_TIME_SLOTS = 48


def _whole_minutes(value: time, field: str) -> time:
    if value.second or value.microsecond or value.tzinfo is not None:
        raise ValueError(f"{field} must be a wall-clock time in whole minutes (HH:MM), without a zone")
    return value


class PublishingSettings(BaseModel):
    """What GET returns and what is stored (one row per site, created with these defaults)."""

    model_config = ConfigDict(extra="forbid")

    auto_approval_enabled: bool = Field(
        default=False, description="approve drafts that pass the quality check at the end of a run"
    )
    auto_publish_enabled: bool = Field(default=True, description="give every approved draft a publishing slot")
    scheduling_mode: SchedulingMode = "time_slots"
    publish_days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS[:5]), max_length=7, description="days slots may fall on"
    )
    publish_time_slots: list[time] = Field(
        default_factory=lambda: [time(9, 0), time(14, 0), time(18, 0)],
        min_length=1,
        max_length=MAX_TIME_SLOTS,
        description="time_slots mode: the wall-clock times of a publishing day",
    )
    stagger_start_time: time = Field(default=time(9, 0), description="stagger mode: the day's window opens")
    stagger_end_time: time = Field(default=time(18, 0), description="stagger mode: the day's last slot")
    stagger_interval_minutes: int = Field(default=15, ge=1, le=1440)
    daily_publish_target: int = Field(default=3, ge=1, le=MAX_TARGET, description="soft: spreads, never blocks")
    weekly_publish_target: int = Field(default=15, ge=1, le=MAX_TARGET, description="soft: spreads, never blocks")
    monthly_publish_target: int = Field(default=50, ge=1, le=MAX_TARGET, description="soft: spreads, never blocks")
    max_scheduled_queue: int = Field(
        default=100, ge=1, le=MAX_QUEUE, description="hard limit on drafts waiting in the schedule"
    )

    @field_validator("publish_days")
    @classmethod
    def _days(cls, value: list[Weekday]) -> list[Weekday]:
        if len(set(value)) != len(value):
            raise ValueError("each day at most once")
        return sorted(value, key=WEEKDAYS.index)

    @field_validator("publish_time_slots")
    @classmethod
    def _slots(cls, value: list[time]) -> list[time]:
        for slot in value:
            _whole_minutes(slot, "each time slot")
        if len(set(value)) != len(value):
            raise ValueError("each time slot at most once")
        return sorted(value)

    @field_validator("stagger_start_time")
    @classmethod
    def _window_start(cls, value: time) -> time:
        return _whole_minutes(value, "the stagger window")

    @field_validator("stagger_end_time")
    @classmethod
    def _window_end(cls, value: time, info: ValidationInfo) -> time:
        # Named on the end field, so the 422 says which field to change.
        start = info.data.get("stagger_start_time")
        if start is not None and value <= start:
            raise ValueError(f"must be later than stagger_start_time {start:%H:%M} (one day's window)")
        return _whole_minutes(value, "the stagger window")

    @property
    def weekdays(self) -> frozenset[int]:
        """Allowed days as date.weekday() numbers (0 = Monday)."""
        return frozenset(WEEKDAYS.index(d) for d in self.publish_days)


class PublishingSettingsPatch(BaseModel):
    """A partial update: only the given fields change; the merged settings are validated as a whole."""

    model_config = ConfigDict(extra="forbid")

    auto_approval_enabled: bool | None = None
    auto_publish_enabled: bool | None = None
    scheduling_mode: SchedulingMode | None = None
    publish_days: list[Weekday] | None = Field(default=None, max_length=7)
    publish_time_slots: list[time] | None = Field(default=None, min_length=1, max_length=MAX_TIME_SLOTS)
    stagger_start_time: time | None = None
    stagger_end_time: time | None = None
    stagger_interval_minutes: int | None = Field(default=None, ge=1, le=1440)
    daily_publish_target: int | None = Field(default=None, ge=1, le=MAX_TARGET)
    weekly_publish_target: int | None = Field(default=None, ge=1, le=MAX_TARGET)
    monthly_publish_target: int | None = Field(default=None, ge=1, le=MAX_TARGET)
    max_scheduled_queue: int | None = Field(default=None, ge=1, le=MAX_QUEUE)

    def apply(self, current: PublishingSettings) -> PublishingSettings:
        """Raises pydantic's ValidationError (field names as in the settings) when the result is invalid."""
        given = {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}
        return PublishingSettings.model_validate(current.model_dump() | given)
