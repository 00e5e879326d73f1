"""Pause (stop releasing), resume (release again, also after a restart) and cancel (drop what is not
released, free the site) — a caller's own run, locked for the transition."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import Engine
from shared.contracts import RunStatus, utcnow
from shared.db.models import Run

ALLOWED = {
    RunStatus.PAUSED: {RunStatus.RUNNING},
    RunStatus.RUNNING: {RunStatus.PAUSED},
    RunStatus.CANCELLED: {RunStatus.RUNNING, RunStatus.PAUSED},
}
VERB = {RunStatus.PAUSED: "pause", RunStatus.RUNNING: "resume", RunStatus.CANCELLED: "cancel"}


async def transition(engine: Engine, session: AsyncSession, account_id: str, run_id: str, target: RunStatus) -> Run:
    run = await repo.lock_own_run(session, account_id, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id!r} does not exist")
    if RunStatus(run.status) not in ALLOWED[target]:
        raise ConflictError(f"cannot {VERB[target]} run {run_id}: it is {run.status}", status=run.status)
    now = utcnow()
    run.status = target.value
    sr = await repo.stage_result(session, run.id, run.current_stage) if run.current_stage else None
    if target is RunStatus.PAUSED:
        run.paused_at = now
        if sr is not None and sr.status == "running" and sr.stopped_reason is None:
            sr.stopped_reason = "paused"  # a limit or budget reason already there stays
        engine.event(
            session,
            run,
            run.current_stage,
            "paused",
            f"paused at stage {run.current_stage}" + (f", batch {sr.batches_done}/{sr.batches_total}" if sr else ""),
        )
    elif target is RunStatus.RUNNING:
        run.resumed_at = now
        if sr is not None and sr.stopped_reason == "paused":
            sr.stopped_reason = None
        engine.event(session, run, run.current_stage, "resumed", f"resumed at stage {run.current_stage}")
        await advance(engine, session, run)
    else:
        run.cancelled_at = now
        run.stopped_reason = "cancelled"
        dropped = await repo.close_pending_batches(session, run.id, "cancelled")
        if sr is not None and sr.status == "running":
            sr.status, sr.partial, sr.stopped_reason, sr.finished_at = "stopped", True, "cancelled", now
            sr.seconds = round((now - sr.started_at).total_seconds(), 3)
        engine.event(
            session,
            run,
            run.current_stage,
            "cancelled",
            f"cancelled; {dropped} unreleased batches dropped; site free; reservation released",
        )
    return run
