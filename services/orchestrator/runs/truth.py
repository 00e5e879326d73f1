"""One truth per item across stages (issue 12).

A batch that meets its stage deadline is failed for the run. Its worker may still have made something (the
result was lost, or is merely late): a draft of a stage-4 task, say. When the next stage is planned, such
output is held back: it does not go to a worker in this run, and it is recorded as failed in that stage
(a batch of its own, status "failed", never released, with the reason). So a run never shows a failed
stage-4 item next to stage-5 work on it, and no stage works on output that was never recorded and charged.

The late result itself is still accepted and charged (runs/results.py); the held-back output then waits,
recorded and paid for, for the next run. Output of a late result that arrives before the next stage is
planned is not held back: its batch is "done" by then and the next stage takes it as usual.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import MAX_RECORDED_FAILURES, Engine
from shared.contracts import Stage, new_message_id, utcnow
from shared.db.models import Run, StageBatch, StageRunResult


async def hold_back(session: AsyncSession, run: Run, stage: Stage, ids: list[int]) -> tuple[list[int], dict[int, str]]:
    """Split the stage's pending items into those it may work and those made from failed items of the
    stage before (item id → why it is held back)."""
    if int(stage) < 2 or not ids:
        return ids, {}
    held: dict[int, str] = {}
    for batch in await repo.failed_batches(session, run.id, int(stage) - 1):
        made = await repo.made_from(session, int(stage), run.site_id, [int(i) for i in batch.item_ids])
        why = (
            f"made from stage {int(stage) - 1} batch {batch.seq}, which failed in this run "
            f"({(batch.result or {}).get('reason', 'no result')}); waits for the next run"
        )
        held |= dict.fromkeys(made & set(ids), why)
    return [i for i in ids if i not in held], held


def record_held(
    engine: Engine, session: AsyncSession, run: Run, stage: Stage, held: dict[int, str], seq: int, sr: StageRunResult
) -> None:
    """The held-back items as one failed batch of the stage (never released), counted in its result."""
    now = utcnow()
    items = sorted(held)
    first = held[items[0]]
    session.add(
        StageBatch(
            id=new_message_id(),
            run_id=run.id,
            stage=int(stage),
            seq=seq,
            item_ids=items,
            status="failed",
            estimate=Decimal(0),
            finished_at=now,
            result={"reason": first, "held_back": True},
        )
    )
    # Counted on a result row that is not flushed yet: its column defaults are not set on it yet.
    sr.items_in = (sr.items_in or 0) + len(items)
    sr.items_failed = (sr.items_failed or 0) + len(items)
    sr.batches_total = (sr.batches_total or 0) + 1
    sr.batches_done = (sr.batches_done or 0) + 1
    sr.partial = True
    room = max(MAX_RECORDED_FAILURES - len(sr.failures or []), 0)
    sr.failures = [*(sr.failures or []), *({"item_id": i, "reason": held[i]} for i in items[:room])]
    engine.event(
        session,
        run,
        stage,
        "held-back",
        f"stage {int(stage)} ({stage.label}): {len(items)} item(s) held back and failed in this run: {first}",
        level="warning",
    )
