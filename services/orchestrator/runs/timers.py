"""The ticker's side of the engine: overdue batches expire at the stage deadline, delays elapse."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import MAX_RECORDED_FAILURES, Engine
from shared.contracts import RunStatus, utcnow
from shared.db.models import Run, StageBatch


async def tick_run(engine: Engine, session: AsyncSession, run_id: str, deadline: datetime) -> None:
    """Expire the run's overdue batches and nudge it; a run another replica holds is left to that one."""
    run = await repo.try_lock_running(session, run_id)
    if run is None or run.status != RunStatus.RUNNING.value:
        return
    for batch in await repo.overdue_batches(session, run_id, deadline):
        await expire(engine, session, run, batch)
    await advance(engine, session, run)


async def expire(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch) -> None:
    reason = f"no result within the stage deadline ({engine.settings.stage_deadline_seconds:.0f}s)"
    batch.status, batch.finished_at, batch.result = "failed", utcnow(), {"reason": reason}
    sr = await repo.stage_result(session, run.id, batch.stage)
    if sr is not None:
        sr.items_failed += len(batch.item_ids)
        sr.batches_done += 1
        sr.partial = True
        sr.failures = [*sr.failures, *({"item_id": i, "reason": reason} for i in batch.item_ids)][
            :MAX_RECORDED_FAILURES
        ]
    engine.event(session, run, batch.stage, "batch-expired", f"batch {batch.seq}: {reason}", level="warning")
