"""The re-ask schedule and the liveness flag (services/orchestrator/runs/liveness.py): pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.orchestrator.runs import liveness
from services.orchestrator.runs.views import BatchWait
from shared.settings import Settings

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def settings(**kw: float) -> Settings:
    base = {"silence_timeout_seconds": 120.0, "silence_work_factor": 3.0, "stage_deadline_seconds": 3600.0}
    return Settings(**(base | kw))  # type: ignore[arg-type]


def test_the_silence_grows_with_the_work_the_stage_has_shown() -> None:
    s = settings()
    assert liveness.silence_seconds(s, None) == 120
    assert liveness.silence_seconds(s, 10.0) == 120  # quick batches: the configured minimum
    assert liveness.silence_seconds(s, 100.0) == 300  # slow ones: 3 × the longest answered wait


def test_re_asks_double_their_spacing_and_stop_before_the_deadline() -> None:
    s = settings()
    due = [liveness.next_ask_after(120, sends) for sends in range(1, 6)]
    assert due == [120, 360, 840, 1800, 3720]  # 1, 3, 7, 15, 31 silences after release
    w = liveness.wait_of(s, T0, 4, None, T0 + timedelta(seconds=1000))
    assert w.next_ask_at == T0 + timedelta(seconds=1800) and w.reasks == 3 and w.silent
    last = liveness.wait_of(s, T0, 5, None, T0 + timedelta(seconds=2000))
    assert last.next_ask_at is None  # 3720 s is past the 3600 s deadline: the deadline decides
    assert last.deadline_at == T0 + timedelta(seconds=3600)


def test_a_batch_is_due_once_per_interval() -> None:
    s = settings()
    at = T0 + timedelta(seconds=130)
    assert liveness.wait_of(s, T0, 1, None, at).due(at)
    assert not liveness.wait_of(s, T0, 2, None, at).due(at)  # the re-ask at 120 s was sent: next at 360 s


def wait(stage: int, seq: int, waiting: float, reasks: int, expected: float = 120) -> BatchWait:
    return BatchWait(
        command_id=f"c{stage}{seq}",
        stage=stage,
        seq=seq,
        released_at=T0,
        waiting_seconds=waiting,
        sends=reasks + 1,
        reasks=reasks,
        expected_within_seconds=expected,
        silent=waiting > expected,
        next_ask_at=T0 + timedelta(seconds=360),
        deadline_at=T0 + timedelta(seconds=3600),
    )


def test_the_run_says_when_its_batches_are_silent_and_why() -> None:
    quiet = liveness.run_liveness([wait(4, 0, 10, 0), wait(4, 1, 20, 0)], "running")
    assert not quiet.silent and quiet.reason is None and quiet.batches_in_flight == 2
    loud = liveness.run_liveness([wait(4, 0, 10, 0), wait(4, 1, 200, 1)], "running")
    assert loud.silent and loud.reasks == 1 and loud.longest_wait_seconds == 200
    assert loud.reason is not None
    assert "stage 4 batch 1 has waited 200s" in loud.reason and "asked again 1 time(s)" in loud.reason
    assert "next re-ask at 12:06:00 UTC" in loud.reason
    paused = liveness.run_liveness([wait(4, 1, 200, 1)], "paused")
    assert paused.reason is not None and "re-asks wait while the run is paused" in paused.reason
