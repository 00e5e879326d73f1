"""The publishing schedule's slot calculation (services.orchestrator.publishing.slots), all three modes: allowed
days, windows, taken slots, the 90-day horizon, the queue limit, soft targets, DST days; and the settings'
validation. Two replicas claiming at once is a database test: tests/integration/test_publishing_slots_db.py."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.orchestrator.publishing.settings import PublishingSettings, PublishingSettingsPatch
from services.orchestrator.publishing.slots import Planner, Unschedulable, resolve_local

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(at: datetime | Unschedulable, tz: ZoneInfo) -> str:
    assert isinstance(at, datetime), at
    return at.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z")


def settings(**kw: Any) -> PublishingSettings:
    # Targets high unless a test is about them, so that they do not move slots around.
    base: dict[str, Any] = {"daily_publish_target": 1000, "weekly_publish_target": 1000, "monthly_publish_target": 1000}
    return PublishingSettings.model_validate(base | kw)


def planner(s: PublishingSettings, now: datetime, tz: str = "UTC", **kw: Any) -> Planner:
    return Planner(s, tz, now, **kw)


# ---------------------------------------------------------------------- time_slots
def test_time_slots_take_the_next_slot_on_an_allowed_day() -> None:
    s = settings(scheduling_mode="time_slots", publish_time_slots=["09:00", "14:00", "18:00"])
    friday_evening = utc(2026, 12, 4, 18, 30)  # Friday, after the last slot
    got = planner(s, friday_evening).plan(4)
    assert got == [utc(2026, 12, 7, 9), utc(2026, 12, 7, 14), utc(2026, 12, 7, 18), utc(2026, 12, 8, 9)]


def test_time_slots_skip_taken_slots_and_the_slot_that_is_now() -> None:
    s = settings(scheduling_mode="time_slots", publish_time_slots=["14:00", "09:00"])  # order does not matter
    now = utc(2026, 12, 1, 9, 0)  # Tuesday 09:00 exactly: that slot is not "after now"
    p = planner(s, now, booked=[utc(2026, 12, 1, 14), utc(2026, 12, 2, 9)])
    assert p.plan(2) == [utc(2026, 12, 2, 14), utc(2026, 12, 3, 9)]


def test_weekend_days_when_allowed() -> None:
    s = settings(scheduling_mode="time_slots", publish_days=["sat", "sun"], publish_time_slots=["10:00"])
    assert planner(s, utc(2026, 12, 1)).plan(3) == [utc(2026, 12, 5, 10), utc(2026, 12, 6, 10), utc(2026, 12, 12, 10)]


def test_time_slots_are_wall_clock_times_in_the_site_zone() -> None:
    s = settings(scheduling_mode="time_slots", publish_time_slots=["09:00"])
    got = planner(s, utc(2026, 12, 1, 12), "Asia/Tokyo").next()
    assert local(got, ZoneInfo("Asia/Tokyo")) == "Wed 2026-12-02 09:00 JST"
    assert got == utc(2026, 12, 2, 0, 0)


# ---------------------------------------------------------------------- stagger
def test_stagger_walks_the_window_by_the_interval_and_includes_its_end() -> None:
    s = settings(scheduling_mode="stagger", stagger_start_time="09:00", stagger_end_time="10:00",
                 stagger_interval_minutes=20)  # fmt: skip
    got = planner(s, utc(2026, 12, 1, 8)).plan(5)  # Tuesday
    assert got == [utc(2026, 12, 1, 9), utc(2026, 12, 1, 9, 20), utc(2026, 12, 1, 9, 40), utc(2026, 12, 1, 10),
                   utc(2026, 12, 2, 9)]  # fmt: skip


def test_stagger_starts_after_now_inside_the_window_and_skips_taken_intervals() -> None:
    s = settings(scheduling_mode="stagger", stagger_interval_minutes=15)
    now = utc(2026, 12, 1, 12, 7)
    p = planner(s, now, booked=[utc(2026, 12, 1, 12, 15), utc(2026, 12, 1, 12, 30)])
    assert p.plan(2) == [utc(2026, 12, 1, 12, 45), utc(2026, 12, 1, 13, 0)]


def test_stagger_after_the_window_goes_to_the_next_allowed_day() -> None:
    s = settings(scheduling_mode="stagger", publish_days=["mon", "wed"])
    assert planner(s, utc(2026, 12, 7, 18, 1)).next() == utc(2026, 12, 9, 9)  # Monday after 18:00 → Wednesday


# ---------------------------------------------------------------------- immediate
def test_immediate_is_now_plus_i_times_the_spacing() -> None:
    s = settings(scheduling_mode="immediate", publish_days=[])  # days and windows do not apply
    now = utc(2026, 12, 5, 23, 59, 30)  # a Saturday night
    assert planner(s, now).plan(3) == [now, now + timedelta(seconds=60), now + timedelta(seconds=120)]


def test_immediate_keeps_a_spacing_away_from_what_is_booked() -> None:
    s = settings(scheduling_mode="immediate")
    now = utc(2026, 12, 1, 12)
    booked = [now - timedelta(seconds=30), now + timedelta(seconds=60), now + timedelta(seconds=100)]
    got = planner(s, now, booked=booked).plan(2)
    assert got == [now + timedelta(seconds=180), now + timedelta(seconds=240)]
    assert planner(s, now, spacing=timedelta(seconds=5)).plan(2) == [now, now + timedelta(seconds=5)]


def test_immediate_ignores_the_targets() -> None:
    s = settings(scheduling_mode="immediate", daily_publish_target=1)
    now = utc(2026, 12, 1, 12)
    assert planner(s, now, booked=[now - timedelta(hours=1)]).next() == now


# ---------------------------------------------------------------------- horizon, queue limit, no days
def test_the_horizon_is_90_days_and_a_full_horizon_says_so() -> None:
    s = settings(scheduling_mode="time_slots", publish_days=["mon"], publish_time_slots=["09:00"],
                 max_scheduled_queue=1000)  # fmt: skip
    now = utc(2026, 12, 1, 12)  # Tuesday; now + 90 days is Monday 1 March 2027 12:00
    got = planner(s, now).plan(14)
    assert all(isinstance(g, datetime) for g in got[:13])  # 13 Mondays, the last on the horizon's own day
    assert got[12] == utc(2027, 3, 1, 9)
    assert got[13] == Unschedulable("no_free_slot", "no free slot in the next 90 days (every slot on mon is taken)")
    # eight hours earlier the horizon ends before that Monday's 09:00: 12 slots
    earlier = planner(s, utc(2026, 12, 1, 4)).plan(13)
    assert earlier[11] == utc(2027, 2, 22, 9) and isinstance(earlier[12], Unschedulable)


def test_the_queue_never_exceeds_its_limit() -> None:
    s = settings(scheduling_mode="immediate", max_scheduled_queue=3)
    got = planner(s, utc(2026, 12, 1), queued=1).plan(4)
    assert [isinstance(g, datetime) for g in got] == [True, True, False, False]
    assert got[2] == Unschedulable("queue_full", "queue full: 3 drafts are scheduled (max_scheduled_queue 3)")


def test_no_allowed_day_is_a_reason() -> None:
    s = settings(scheduling_mode="stagger", publish_days=[])
    assert planner(s, utc(2026, 12, 1)).next() == Unschedulable(
        "no_allowed_day", "no allowed day in 90 days (publish_days is empty)"
    )


# ---------------------------------------------------------------------- soft targets
def test_a_day_at_its_daily_target_moves_on_to_the_next_day() -> None:
    s = settings(scheduling_mode="time_slots", daily_publish_target=2)
    got = planner(s, utc(2026, 12, 1, 8)).plan(5)  # Tuesday
    assert got == [utc(2026, 12, 1, 9), utc(2026, 12, 1, 14), utc(2026, 12, 2, 9), utc(2026, 12, 2, 14),
                   utc(2026, 12, 3, 9)]  # fmt: skip


def test_published_and_scheduled_drafts_count_towards_the_targets() -> None:
    s = settings(scheduling_mode="time_slots", daily_publish_target=3, weekly_publish_target=4)
    now = utc(2026, 12, 1, 8)  # Tuesday; Monday had 3 posts, so the week holds one more
    booked = [utc(2026, 11, 30, 9), utc(2026, 11, 30, 14), utc(2026, 11, 30, 18)]
    got = planner(s, now, booked=booked).plan(2)
    assert got == [utc(2026, 12, 1, 9), utc(2026, 12, 7, 9)]  # then the next ISO week


def test_the_monthly_target_moves_to_next_month() -> None:
    s = settings(scheduling_mode="time_slots", publish_time_slots=["09:00"], monthly_publish_target=2)
    booked = [utc(2026, 12, 1, 9)]
    assert planner(s, utc(2026, 12, 2, 8), booked=booked).plan(2) == [utc(2026, 12, 2, 9), utc(2027, 1, 1, 9)]


def test_targets_never_block_when_every_day_of_the_horizon_is_at_its_target() -> None:
    s = settings(scheduling_mode="time_slots", publish_days=["mon"], publish_time_slots=["09:00", "10:00"],
                 daily_publish_target=1, max_scheduled_queue=1000)  # fmt: skip
    got = planner(s, utc(2026, 12, 1, 12)).plan(26)  # 13 Mondays in the horizon, two slots each
    assert all(isinstance(g, datetime) for g in got)
    assert got[:2] == [utc(2026, 12, 7, 9), utc(2026, 12, 14, 9)]  # spread first: one a day
    assert got[13] == utc(2026, 12, 7, 10)  # then the earliest free slot, target or not
    assert len(set(got)) == 26


# ---------------------------------------------------------------------- DST
def test_berlin_spring_gap_moves_wall_times_forward_and_gives_each_instant_once() -> None:
    s = settings(scheduling_mode="stagger", publish_days=["sun"], stagger_start_time="01:00",
                 stagger_end_time="04:00", stagger_interval_minutes=30)  # fmt: skip
    got = planner(s, utc(2026, 3, 28, 12), "Europe/Berlin").plan(6)  # Sunday 29 March: 02:00 → 03:00
    shown = [local(g, BERLIN) for g in got]
    assert shown[:5] == ["Sun 2026-03-29 01:00 CET", "Sun 2026-03-29 01:30 CET", "Sun 2026-03-29 03:00 CEST",
                         "Sun 2026-03-29 03:30 CEST", "Sun 2026-03-29 04:00 CEST"]  # fmt: skip
    assert shown[5] == "Sun 2026-04-05 01:00 CEST"  # 02:00/02:30 fell on 03:00/03:30: five slots that day
    assert len(set(got)) == 6


def test_berlin_autumn_fold_takes_the_first_occurrence_once() -> None:
    s = settings(scheduling_mode="time_slots", publish_days=["sun"], publish_time_slots=["02:30"])
    got = planner(s, utc(2026, 10, 24, 12), "Europe/Berlin").plan(2)  # Sunday 25 October: 03:00 → 02:00
    assert got[0] == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first of the two
    assert local(got[1], BERLIN) == "Sun 2026-11-01 02:30 CET"


def test_new_york_spring_gap_and_autumn_fold() -> None:
    s = settings(scheduling_mode="time_slots", publish_days=["sun"], publish_time_slots=["01:30", "02:30"])
    spring = planner(s, utc(2026, 3, 7, 12), "America/New_York").plan(2)  # Sunday 8 March: 02:00 → 03:00
    assert [local(g, NEW_YORK) for g in spring] == ["Sun 2026-03-08 01:30 EST", "Sun 2026-03-08 03:30 EDT"]
    autumn = planner(s, utc(2026, 10, 31, 12), "America/New_York").plan(3)  # Sunday 1 November: 02:00 → 01:00
    assert autumn[0] == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST an hour later
    assert local(autumn[1], NEW_YORK) == "Sun 2026-11-01 02:30 EST"
    assert local(autumn[2], NEW_YORK) == "Sun 2026-11-08 01:30 EST"


def test_stagger_through_the_new_york_fold_is_a_wall_clock_grid() -> None:
    s = settings(scheduling_mode="stagger", publish_days=["sun"], stagger_start_time="00:30",
                 stagger_end_time="02:00", stagger_interval_minutes=30)  # fmt: skip
    got = planner(s, utc(2026, 10, 31, 12), "America/New_York").plan(4)
    assert [local(g, NEW_YORK) for g in got] == ["Sun 2026-11-01 00:30 EDT", "Sun 2026-11-01 01:00 EDT",
                                                 "Sun 2026-11-01 01:30 EDT", "Sun 2026-11-01 02:00 EST"]  # fmt: skip


def test_resolve_local_matches_the_run_schedules_rule() -> None:
    from services.orchestrator.config import SiteConfig
    from services.orchestrator.schedule import next_run_at

    for zone, day in (("Europe/Berlin", datetime(2026, 3, 29)), ("America/New_York", datetime(2026, 11, 1))):
        for at in (time(1, 30), time(2, 30), time(3, 30)):
            config = SiteConfig(frequency="daily", scheduled_time=at, timezone=zone)
            before = datetime.combine(day.date(), time(0, 0), ZoneInfo(zone)) - timedelta(hours=1)
            assert resolve_local(day.date(), at, ZoneInfo(zone)) == next_run_at(config, before)


# ---------------------------------------------------------------------- settings
def test_defaults_are_the_issue_s() -> None:
    d = PublishingSettings()
    assert (d.auto_approval_enabled, d.auto_publish_enabled, d.scheduling_mode) == (False, True, "time_slots")
    assert d.publish_days == ["mon", "tue", "wed", "thu", "fri"]
    assert d.publish_time_slots == [time(9), time(14), time(18)]
    assert (d.stagger_start_time, d.stagger_end_time, d.stagger_interval_minutes) == (time(9), time(18), 15)
    assert (d.daily_publish_target, d.weekly_publish_target, d.monthly_publish_target) == (3, 15, 50)
    assert d.max_scheduled_queue == 100


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"publish_days": ["mon", "funday"]}, "publish_days"),
        ({"publish_days": ["mon", "mon"]}, "publish_days"),
        ({"publish_time_slots": ["09:00", "09:00"]}, "publish_time_slots"),
        ({"publish_time_slots": ["09:00:30"]}, "publish_time_slots"),
        ({"publish_time_slots": []}, "publish_time_slots"),
        ({"stagger_end_time": "08:00"}, "stagger_end_time"),
        ({"stagger_interval_minutes": 0}, "stagger_interval_minutes"),
        ({"scheduling_mode": "hourly"}, "scheduling_mode"),
        ({"max_scheduled_queue": 0}, "max_scheduled_queue"),
        ({"daily_publish_target": -1}, "daily_publish_target"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_settings_name_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PublishingSettingsPatch.model_validate(patch).apply(PublishingSettings())
    assert caught.value.errors()[0]["loc"][0] == field


def test_a_patch_changes_only_what_it_names() -> None:
    merged = PublishingSettingsPatch.model_validate({"stagger_start_time": "07:30"}).apply(PublishingSettings())
    assert merged.stagger_start_time == time(7, 30) and merged.stagger_end_time == time(18)
    assert PublishingSettingsPatch.model_validate({"publish_days": ["fri", "mon"]}).apply(merged).publish_days == [
        "mon", "fri"]  # fmt: skip
