"""A worker's result for one batch: charge its usage once, record its counts, then let the barrier decide."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.accounts import service as accounts
from services.orchestrator.errors import NotFoundError
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import MAX_RECORDED_FAILURES, Engine
from services.orchestrator.sites import service as sites
from shared.contracts import StageResult, utcnow
from shared.delivery import claim_inbox

RESULTS_CONSUMER = "orchestrator.results"


async def record_result(engine: Engine, session: AsyncSession, result: StageResult) -> bool:
    """False for a duplicate; NotFoundError for a result whose command this orchestrator never issued."""
    if not await claim_inbox(session, RESULTS_CONSUMER, result.message_id):
        return False
    batch_run = await repo.batch_run_id(session, result.command_id)
    if batch_run is None:  # rolls the inbox claim back; the handler dead-letters the record
        raise NotFoundError(f"result {result.message_id} names unknown command {result.command_id}")
    run = await repo.lock_run(session, batch_run)
    batch = await repo.lock_batch(session, result.command_id)
    assert run is not None and batch is not None  # foreign key: a batch always has its run
    cost = engine.costs.credits(result.usage)
    charged = Decimal(0)
    if cost > 0:
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
    sr = await repo.stage_result(session, run.id, batch.stage)
    if batch.status != "released":
        # Already settled (a replay under a new message id, or late after its deadline): the
        # ledger key kept the charge single; the counts were recorded the first time.
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
        return True
    batch.status, batch.finished_at = "done", utcnow()
    batch.result = {
        "status": result.status.value,
        "processed": result.items_processed,
        "created": result.items_created,
        "skipped": result.items_skipped,
        "failed": len(result.failures),
        "credits": str(charged),
        "worker": result.worker,
    }
    if sr is not None:
        sr.items_processed += result.items_processed
        sr.items_created += result.items_created
        sr.items_skipped += result.items_skipped
        sr.items_failed += len(result.failures)
        sr.batches_done += 1
        sr.credits += charged
        if result.failures:
            sr.partial = True
            room = max(MAX_RECORDED_FAILURES - len(sr.failures), 0)
            sr.failures = [
                *sr.failures,
                *({"item_id": f.item_id, "reason": f.reason} for f in result.failures[:room]),
            ]
    if result.failures:
        engine.event(
            session,
            run,
            batch.stage,
            "item-failures",
            f"batch {batch.seq}: {len(result.failures)} item(s) failed: {result.failures[0].reason[:200]}",
            level="warning",
        )
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
    await advance(engine, session, run)
    return True
