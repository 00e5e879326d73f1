"""The pure parts of the metrics: calendar periods of the automation figures, the AI client's metering decorator
(records reach the caller's Usage and the counters, with the outcome of a call that broke off), timed commands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from services.orchestrator.runs.figures import period_starts
from shared import metrics
from shared.ai.metering import metered
from shared.ai.usage import CallRecord, Usage


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_periods_start_at_local_midnight_monday_and_the_first() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Tue 2026-12-01 23:30 UTC is already Wednesday 00:30 in Berlin
    today, week, month = period_starts(datetime(2026, 12, 1, 23, 30, tzinfo=UTC), berlin)
    assert today == datetime(2026, 12, 2, tzinfo=berlin)
    assert week == datetime(2026, 11, 30, tzinfo=berlin) and week.weekday() == 0
    assert month == datetime(2026, 12, 1, tzinfo=berlin)
    # after the spring DST change (29 March): each midnight keeps its own offset
    starts = period_starts(datetime(2026, 3, 31, 12, tzinfo=UTC), berlin)
    assert [s.isoformat() for s in starts] == [
        "2026-03-31T00:00:00+02:00", "2026-03-30T00:00:00+02:00", "2026-03-01T00:00:00+01:00"
    ]


class FakeClient:
    @metered
    async def structured(self, system: str, purpose: str, usage: Usage, *, fail: str | None = None) -> str:
        usage.add(CallRecord(kind="chat", model="m-unit", purpose=purpose, prompt_tokens=3, completion_tokens=5,
                             attempts=2, ms=1500))  # fmt: skip
        if fail == "cancel":
            raise asyncio.CancelledError
        if fail == "crash":
            raise RuntimeError("bug")
        return "ok"


async def test_metered_calls_reach_the_callers_usage_and_the_counters() -> None:
    usage = Usage()
    before = value("contentline_ai_calls_total", kind="chat", purpose="unit", model="m-unit", outcome="ok")
    seconds = value("contentline_ai_call_seconds_sum", kind="chat", purpose="unit", outcome="ok")
    assert await FakeClient().structured("s", "unit", usage) == "ok"
    assert [r.purpose for r in usage.records] == ["unit"]
    assert value("contentline_ai_calls_total", kind="chat", purpose="unit", model="m-unit", outcome="ok") == before + 1
    assert value("contentline_ai_call_seconds_sum", kind="chat", purpose="unit", outcome="ok") == seconds + 1.5
    assert value("contentline_ai_tokens_total", kind="chat", purpose="unit", direction="completion") >= 5

    for fail, outcome in (("cancel", "cancelled"), ("crash", "error")):
        labels = {"kind": "chat", "purpose": "unit", "model": "m-unit", "outcome": outcome}
        n = value("contentline_ai_calls_total", **labels)
        with pytest.raises((asyncio.CancelledError, RuntimeError)):
            await FakeClient().structured("s", "unit", usage, fail=fail)
        assert value("contentline_ai_calls_total", **labels) == n + 1
    assert len(usage.records) == 3  # the records of the calls that broke off are still the caller's


async def test_timed_commands_count_each_attempt_with_its_outcome() -> None:
    async def handler(record: int) -> None:
        if record < 0:
            raise ValueError("bad")

    timed = metrics.timed("unit.topic", handler)
    ok = value("contentline_command_seconds_count", topic="unit.topic", outcome="ok")
    await timed(1)
    with pytest.raises(ValueError):
        await timed(-1)
    assert value("contentline_command_seconds_count", topic="unit.topic", outcome="ok") == ok + 1
    assert value("contentline_command_seconds_count", topic="unit.topic", outcome="error") == 1
