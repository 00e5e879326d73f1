"""Workers' results, applied in groups: every result of one run that arrived together is recorded in one
transaction under the run lock (charge once, count, then one barrier decision for the group), so the
orchestrator keeps up with workers at batch size 1 (issue 13).

One truth per item (issue 12): a result that comes after its batch expired is accepted and charged, and its
items move from "failed" to what the worker reported; the stage deadline's failure stands only for what the
run had already decided without them (runs/truth.py keeps their output out of the later stages it planned
meanwhile, so that output waits for the next run). A result is believed only for output the database holds
(runs/lost_output.py): one whose output a crash lost is not recorded, and its batch is asked again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.accounts import service as accounts
from services.orchestrator.errors import NotFoundError
from services.orchestrator.runs import lost_output
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import MAX_RECORDED_FAILURES, Engine
from services.orchestrator.sites import service as sites
from shared.contracts import RunStatus, StageResult, utcnow
from shared.db.models import Run, StageBatch, StageRunResult
from shared.delivery import claim_inbox

RESULTS_CONSUMER = "orchestrator.results"


async def record_results(engine: Engine, session: AsyncSession, run_id: str, results: list[StageResult]) -> list[bool]:
    """Record results of run `run_id`, in order; per result False for a duplicate (already recorded).

    NotFoundError when a result names a command this orchestrator never issued for that run (the
    transaction is then rolled back; the caller dead-letters that record and applies the others).
    """
    run = await repo.lock_run(session, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id!r} does not exist")
    batches = await repo.lock_batches(session, sorted({r.command_id for r in results}))
    for came in results:
        known = batches.get(came.command_id)
        if known is None or known.run_id != run_id:
            raise NotFoundError(f"result {came.message_id} names unknown command {came.command_id}")
    stages: dict[int, StageRunResult | None] = {}
    recorded: list[bool] = []
    asked: set[str] = set()  # batches asked again in this group: a copy of the same result waits for the answer
    for came in results:
        batch = batches[came.command_id]
        vetted = None if batch.id in asked else await lost_output.vet(engine, session, run, batch, came)
        if vetted is None:  # not recorded: its inbox row stays free for the answer to the new ask
            asked.add(batch.id)
            recorded.append(False)
            continue
        if not await claim_inbox(session, RESULTS_CONSUMER, vetted.message_id):
            recorded.append(False)
            continue
        if batch.stage not in stages:
            stages[batch.stage] = await repo.stage_result(session, run.id, batch.stage)
        await apply(engine, session, run, batch, stages[batch.stage], vetted)
        recorded.append(True)
    if any(recorded):
        await advance(engine, session, run)  # one barrier decision for the whole group
    return recorded


async def charge(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, result: StageResult) -> Decimal:
    """Debit the result's usage once per command (the ledger key), whenever it comes."""
    cost = engine.costs.credits(result.usage)
    if cost <= 0:
        return Decimal(0)
    done = await accounts.debit(
        session,
        run.account_id,
        run.id,
        f"debit:{result.command_id}",
        cost,
        {"stage": int(result.stage), "batch": batch.seq, "usage": result.usage.model_dump(mode="json")},
    )
    charged = done or Decimal(0)
    run.total_credits_used += charged
    return charged


async def apply(
    engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, sr: StageRunResult | None, result: StageResult
) -> None:
    charged = await charge(engine, session, run, batch, result)
    if batch.status == "released":
        settle(batch, sr, result, charged)
    elif batch.status == "failed":  # expired at the deadline: accepted late, its items' failure undone
        waited = (utcnow() - batch.released_at).total_seconds() if batch.released_at else 0.0
        unfail(batch, sr)
        settle(batch, sr, result, charged, late=True)
        await track_items(engine, session, run, batch, result)
        later = run.current_stage > batch.stage or run.status != RunStatus.RUNNING.value
        engine.event(
            session,
            run,
            batch.stage,
            "late-result",
            f"batch {batch.seq}: result came {waited:.0f}s after release, past the stage deadline: accepted, "
            f"{result.items_processed} processed, {len(result.failures)} failed, {charged:.2f} credits charged"
            + ("; what it made waits for the next run (this run planned its later stages without it)" if later else ""),
            level="warning",
        )
        return
    else:
        # Already settled (a replay under a new message id) or never sent: the ledger key kept the charge
        # single; the counts were recorded the first time.
        if sr is not None:
            sr.credits += charged
        engine.event(
            session,
            run,
            batch.stage,
            "late-result",
            f"result for batch {batch.seq} arrived while it was {batch.status}",
            level="warning",
        )
        return
    engine.notify(
        session,
        run,
        batch.stage,
        "batch-done",
        f"batch {batch.seq}: {result.items_processed} processed, {len(result.failures)} failed, {charged} credits",
    )
    if result.failures:
        engine.event(
            session,
            run,
            batch.stage,
            "item-failures",
            f"batch {batch.seq}: {len(result.failures)} item(s) failed: {result.failures[0].reason[:200]}",
            level="warning",
        )
    await track_items(engine, session, run, batch, result)


async def track_items(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, result: StageResult) -> None:
    """The items' failure streaks across runs (sites/parking.py): successes clear theirs, failures extend them,
    and an item that failed `park_after_failed_runs` runs in a row is parked, with an activity line."""
    parked = await sites.record_item_outcomes(
        session,
        run.site_id,
        batch.stage,
        run.id,
        list(batch.item_ids),
        [(f.item_id, f.reason) for f in result.failures],
        engine.settings.park_after_failed_runs,
    )
    for item in parked:
        engine.event(
            session,
            run,
            batch.stage,
            "item-parked",
            f"stage {batch.stage} item {item.item_id} parked after failing {item.failed_runs} runs in a row "
            f"(un-park it through /sites/{run.site_id}/parked-items): {item.reasons[-1]['reason'][:200]}",
            level="warning",
        )


def settle(
    batch: StageBatch, sr: StageRunResult | None, result: StageResult, charged: Decimal, late: bool = False
) -> None:
    batch.status, batch.finished_at = "done", utcnow()
    outcome: dict[str, Any] = {
        "status": result.status.value,
        "processed": result.items_processed,
        "created": result.items_created,
        "skipped": result.items_skipped,
        "failed": len(result.failures),
        "credits": str(charged),
        "worker": result.worker,
    }
    batch.result = outcome | ({"late": True} if late else {})
    if sr is None:
        return
    sr.items_processed += result.items_processed
    sr.items_created += result.items_created
    sr.items_skipped += result.items_skipped
    sr.items_failed += len(result.failures)
    sr.credits += charged
    if not late:
        sr.batches_done += 1  # an expired batch was counted done when it expired
    if result.failures:
        sr.partial = True
        room = max(MAX_RECORDED_FAILURES - len(sr.failures), 0)
        sr.failures = [*sr.failures, *({"item_id": f.item_id, "reason": f.reason} for f in result.failures[:room])]


def unfail(batch: StageBatch, sr: StageRunResult | None) -> None:
    """Take back what the deadline recorded for an expired batch's items."""
    if sr is None:
        return
    items = {int(i) for i in batch.item_ids}
    reason = (batch.result or {}).get("reason")
    sr.items_failed = max(sr.items_failed - len(items), 0)
    sr.failures = [f for f in sr.failures if not (f.get("item_id") in items and f.get("reason") == reason)]
