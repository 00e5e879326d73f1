"""When a released batch has been silent too long: the one schedule the ticker's re-asks and the API's
liveness views both read (issue 12).

A batch is sent once at release (`StageBatch.attempt` = 1). Its result is expected within the stage's
silence: `silence_timeout_seconds`, or `silence_work_factor` × the longest wait of a batch of the same stage
of the run that was answered, whichever is longer (a stage whose batches take minutes is not re-asked after
two). The n-th send is followed by a re-ask after `silence × 2^(n-1)` more seconds, so the k-th re-ask comes
`silence × (2^k − 1)` after release: 1, 3, 7, 15 … silences. Nothing is stored for the schedule beyond
`released_at` and `attempt`, so every replica computes the same due time and the run lock makes one of
them send it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.orchestrator.runs.views import BatchWait, Liveness
from shared.contracts import RunStatus
from shared.db.models import StageBatch
from shared.settings import Settings

MAX_DOUBLINGS = 20  # 2^20 silences is years: no float overflow, no schedule change in practice
# A batch failed by its deadline is still asked for its result this long: workers keep their answers with
# their inbox rows for 14 days (shared.kafka.Retention.inbox_days).
LATE_ASK_HORIZON = timedelta(days=14)


def silence_seconds(settings: Settings, longest_answered_wait: float | None) -> float:
    """How long a batch of this stage may stay silent before it is asked again."""
    base = settings.silence_timeout_seconds
    if longest_answered_wait is None:
        return base
    return max(base, settings.silence_work_factor * longest_answered_wait)


def next_ask_after(silence: float, sends: int) -> float:
    """Seconds after release when the batch, sent `sends` times so far, is asked again."""
    return silence * float(2 ** min(max(sends, 1), MAX_DOUBLINGS) - 1)


@dataclass(frozen=True)
class Wait:
    """Where one in-flight batch stands: how long it waited, how often it was asked, what comes next."""

    waiting_seconds: float
    sends: int
    expected_within_seconds: float
    next_ask_at: datetime | None  # None when the deadline comes first
    deadline_at: datetime

    @property
    def reasks(self) -> int:
        return max(self.sends - 1, 0)

    @property
    def silent(self) -> bool:
        """Silent longer than expected: at least one re-ask was due."""
        return self.waiting_seconds > self.expected_within_seconds

    def due(self, now: datetime) -> bool:
        return self.next_ask_at is not None and now >= self.next_ask_at


def wait_of(
    settings: Settings, released_at: datetime, sends: int, longest_answered_wait: float | None, now: datetime
) -> Wait:
    silence = silence_seconds(settings, longest_answered_wait)
    deadline_at = released_at + timedelta(seconds=settings.stage_deadline_seconds)
    next_at = released_at + timedelta(seconds=next_ask_after(silence, sends))
    return Wait(
        waiting_seconds=max((now - released_at).total_seconds(), 0.0),
        sends=max(sends, 1),
        expected_within_seconds=silence,
        next_ask_at=next_at if next_at < deadline_at else None,
        deadline_at=deadline_at,
    )


def batch_wait(settings: Settings, batch: StageBatch, longest_answered_wait: float | None, now: datetime) -> BatchWait:
    released = batch.released_at or now
    w = wait_of(settings, released, batch.attempt, longest_answered_wait, now)
    return BatchWait(
        command_id=batch.id,
        stage=batch.stage,
        seq=batch.seq,
        released_at=batch.released_at,
        waiting_seconds=round(w.waiting_seconds, 3),
        sends=w.sends,
        reasks=w.reasks,
        expected_within_seconds=round(w.expected_within_seconds, 3),
        silent=w.silent,
        next_ask_at=w.next_ask_at,
        deadline_at=w.deadline_at,
    )


def run_liveness(waits: list[BatchWait], status: str) -> Liveness:
    """The run's flag: silent when a batch in flight waits longer than expected, with what and since when."""
    silent = [w for w in waits if w.silent]
    longest = max((w.waiting_seconds for w in waits), default=0.0)
    reason = None
    if silent:
        worst = max(silent, key=lambda w: w.waiting_seconds)
        what = f"{len(silent)} batches have" if len(silent) > 1 else "a batch has"
        nxt = (
            f"next re-ask at {worst.next_ask_at:%H:%M:%S} UTC"
            if worst.next_ask_at is not None
            else f"the stage deadline fails it at {worst.deadline_at:%H:%M:%S} UTC"
        )
        reason = (
            f"{what} been silent longer than expected: stage {worst.stage} batch {worst.seq} has waited "
            f"{worst.waiting_seconds:.0f}s for its result (expected within {worst.expected_within_seconds:.0f}s), "
            f"asked again {worst.reasks} time(s); "
            + (nxt if status == RunStatus.RUNNING.value else f"re-asks wait while the run is {status}")
        )
    return Liveness(
        silent=bool(silent),
        reason=reason,
        batches_in_flight=len(waits),
        longest_wait_seconds=round(longest, 3),
        reasks=sum(w.reasks for w in waits),
    )
