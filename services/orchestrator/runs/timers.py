"""The ticker's side of the engine: silent batches are asked again, overdue ones expire at the stage
deadline, delays elapse. Runs with the run row locked (SKIP LOCKED: a run another replica holds is left to
that one), so each re-ask and each expiry happens once, whichever replica ticks."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import RunPlan
from services.orchestrator.runs import liveness
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import MAX_RECORDED_FAILURES, Engine
from services.orchestrator.runs.window import resend, send
from shared.contracts import RunStatus, utcnow
from shared.db.models import Run, StageBatch


async def tick_run(engine: Engine, session: AsyncSession, run_id: str, deadline: datetime) -> None:
    """Expire the run's overdue batches, ask again for the silent ones, and nudge it."""
    run = await repo.try_lock_running(session, run_id)
    if run is None or run.status != RunStatus.RUNNING.value:
        return
    for batch in await repo.overdue_batches(session, run_id, deadline):
        await expire(engine, session, run, batch)
    await ask_again(engine, session, run)
    await advance(engine, session, run)


async def ask_again(engine: Engine, session: AsyncSession, run: Run) -> int:
    """Re-send every released batch whose re-ask is due (same command id); returns how many were sent."""
    now = utcnow()
    silent = await repo.silent_batches(
        session, run.id, now - timedelta(seconds=engine.settings.silence_timeout_seconds)
    )
    if not silent:
        return 0
    waits = await repo.longest_answered_waits(session, run.id)
    sent = 0
    for batch in silent:
        assert batch.released_at is not None  # released batches carry their release time
        wait = liveness.wait_of(engine.settings, batch.released_at, batch.attempt, waits.get(batch.stage), now)
        if not wait.due(now):
            continue
        why = (
            f"batch {batch.seq}: no result {wait.waiting_seconds:.0f}s after release (expected within "
            f"{wait.expected_within_seconds:.0f}s); asked again with the same command id {batch.id} "
            f"(re-ask {batch.attempt})"
        )
        resend(engine, session, run, batch, "re-asked", why)
        sent += 1
    return sent


async def expire(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch) -> None:
    """The deadline fails the batch for this run (its items stay out of the later stages: runs/truth.py).

    It is asked one last time: a worker that did the work answers with its stored result, which is then
    accepted late and charged (runs/results.py), so work that exists is never left unrecorded.
    """
    reason = f"no result within the stage deadline ({engine.settings.stage_deadline_seconds:.0f}s)"
    batch.status, batch.finished_at, batch.result = "failed", utcnow(), {"reason": reason}
    batch.attempt += 1
    send(engine, session, run, batch, RunPlan.model_validate(run.options))
    sr = await repo.stage_result(session, run.id, batch.stage)
    if sr is not None:
        sr.items_failed += len(batch.item_ids)
        sr.batches_done += 1
        sr.partial = True
        sr.failures = [*sr.failures, *({"item_id": i, "reason": reason} for i in batch.item_ids)][
            :MAX_RECORDED_FAILURES
        ]
    engine.event(
        session,
        run,
        batch.stage,
        "batch-expired",
        f"batch {batch.seq}: {reason}, after {batch.attempt - 1} sends; its items are failed in this run "
        "(a late result is still accepted and charged)",
        level="warning",
    )


async def ask_expired(engine: Engine, session: AsyncSession, limit: int = 100) -> int:
    """Keep asking for the results of batches the deadline failed, on the same doubling schedule, also after
    their run ended, for as long as workers keep their answers (LATE_ASK_HORIZON): work a worker did is then
    recorded and charged when its answer finally comes (runs/results.py), never left unaccounted."""
    now = utcnow()
    due = await repo.unanswered_expired(
        session,
        now,
        engine.settings.silence_timeout_seconds,
        liveness.MAX_DOUBLINGS,
        liveness.LATE_ASK_HORIZON,
        limit,
    )
    for batch, run in due:
        why = (
            f"batch {batch.seq} (failed at the stage deadline, no result since): asked again for its result "
            f"with the same command id {batch.id} (send {batch.attempt + 1})"
        )
        resend(engine, session, run, batch, "re-asked", why)
    return len(due)
