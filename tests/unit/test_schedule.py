"""Next schedule times: DST changes, month ends, weekly days; config validation."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.orchestrator.config import SiteConfig, SiteConfigPatch
from services.orchestrator.schedule import next_run_at


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cfg(**kw: object) -> SiteConfig:
    return SiteConfig.model_validate(kw)


def test_daily_keeps_wall_clock_time_across_spring_forward() -> None:
    c = cfg(frequency="daily", scheduled_time=time(9, 0), timezone="Europe/Berlin")
    before = next_run_at(c, utc(2026, 3, 28, 9, 0))  # Sunday 29 March: CET → CEST
    after = next_run_at(c, before)
    assert before == utc(2026, 3, 29, 7, 0)  # 09:00 CEST
    assert after == utc(2026, 3, 30, 7, 0)
    assert before.astimezone(ZoneInfo("Europe/Berlin")).hour == 9


def test_time_inside_the_spring_gap_moves_forward() -> None:
    c = cfg(frequency="daily", scheduled_time=time(2, 30), timezone="Europe/Berlin")
    at = next_run_at(c, utc(2026, 3, 28, 12, 0))
    assert at.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 30)


def test_time_in_the_fall_back_fold_fires_once() -> None:
    c = cfg(frequency="daily", scheduled_time=time(1, 30), timezone="America/New_York")
    first = next_run_at(c, utc(2026, 11, 1, 4, 0))
    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first occurrence
    assert next_run_at(c, first) == utc(2026, 11, 2, 6, 30)  # not 01:30 EST the same night


def test_monthly_31st_lands_on_the_last_day_of_shorter_months() -> None:
    c = cfg(frequency="monthly", monthly_day=31, scheduled_time=time(8, 0), timezone="UTC")
    got, at = [], utc(2026, 1, 1)
    for _ in range(4):
        at = next_run_at(c, at)
        got.append(at.date().isoformat())
    assert got == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
    leap = next_run_at(c, utc(2028, 2, 1))
    assert leap == utc(2028, 2, 29, 8, 0)


def test_weekly_and_same_day_already_passed() -> None:
    c = cfg(frequency="weekly", weekly_day=0, scheduled_time=time(6, 0), timezone="Asia/Tokyo")
    monday_after_six = utc(2026, 11, 23, 0, 0)  # 09:00 Monday in Tokyo
    assert next_run_at(c, monday_after_six) == utc(2026, 11, 29, 21, 0)  # next Monday 06:00 JST


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"batch_sizes": {"1": 0}}, "batch_sizes", "1-1000"),
        ({"batch_sizes": {"9": 5}}, "batch_sizes", "do not exist"),
        ({"limits": {"max_keywords_per_run": -1}}, "max_keywords_per_run", "greater than or equal"),
        ({"delay_between_batches_seconds": 99999}, "delay_between_batches_seconds", "less than"),
        ({"frequency": "hourly"}, "frequency", "daily"),
        ({"budget_shares": {"clustering": 50}}, "budget_shares", "sum to 100"),
        ({"budget_shares": {"clustering": 150, "ideas": -50}}, "budget_shares", "0-100"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
def test_bad_config_is_rejected_with_field_and_reason(patch: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        SiteConfigPatch.model_validate(patch).apply(SiteConfig())
    text = str(err.value)
    assert field in text and words in text


def test_patch_merges_nested_options_and_limits() -> None:
    current = SiteConfigPatch.model_validate(
        {"options": {"target_words": 2000, "banned_words": ["cheap"]}, "limits": {"max_keywords_per_run": 7}}
    ).apply(SiteConfig())
    patched = SiteConfigPatch.model_validate(
        {"options": {"brand_notes": "We are friendly."}, "limits": {"max_ideas_per_run": 3}}
    ).apply(current)
    assert patched.options.target_words == 2000 and patched.options.banned_words == ["cheap"]
    assert patched.options.brand_notes == "We are friendly."
    assert patched.limits.max_keywords_per_run == 7 and patched.limits.max_ideas_per_run == 3
