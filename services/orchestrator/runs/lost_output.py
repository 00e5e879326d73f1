"""A result is believed only for output the database holds (issue 12).

A worker commits its work (drafts, inbox row, model calls) and its result event in one transaction, and the
outbox relay publishes the event once that commit is visible. If the database then loses the commit (a crash
with asynchronous commit, a failover to an asynchronous replica, a restored backup), the event is already on
Kafka: recorded as it is, it would mark the batch done, charge it and move the run on, with no draft behind it.

So before a result of a released (or deadline-failed) batch is recorded, the orchestrator checks that every
item the result does not name as failed has its output. When some have none, the result is not recorded or
charged and the batch is asked again at once (same command id): a worker that lost its inbox row does the work
again; one that kept it (the output was deleted since) answers with the same result. After LOST_OUTPUT_ASKS
such asks the result is recorded with those items failed and the reason, so a run never waits on output
that asking cannot bring back.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.window import resend
from shared.contracts import ItemFailure, ResultStatus, StageResult
from shared.db.models import Run, StageBatch

LOST_OUTPUT_ASKS = 2
ASKS_KEY = "lost_output_asks"  # counted on the batch's result column while it is out


def needs_check(batch: StageBatch) -> bool:
    """Whether a result for this batch is checked (one that settled it before is recorded as it came)."""
    return batch.status in ("released", "failed")


async def outputs_held(session: AsyncSession, run: Run, batches: Iterable[StageBatch]) -> dict[int, set[int]]:
    """Per stage, which items of these batches have their output: one read per stage for a group of results
    (the orchestrator writes no output, so it holds for the whole transaction)."""
    items: dict[int, set[int]] = {}
    for batch in batches:
        if needs_check(batch):
            items.setdefault(batch.stage, set()).update(int(i) for i in batch.item_ids)
    return {
        stage: await repo.items_with_output(session, stage, run.site_id, sorted(ids)) for stage, ids in items.items()
    }


async def vet(
    engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, result: StageResult, have: set[int]
) -> StageResult | None:
    """The result to record (as it came, or with the items whose output is missing failed), or None when the
    batch was asked again instead. `have`: the items of its stage with output (`outputs_held`)."""
    if not needs_check(batch):
        return result  # already settled: a replay, recorded as before
    failed = {f.item_id for f in result.failures}
    claimed = [int(i) for i in batch.item_ids if int(i) not in failed]
    missing = [i for i in claimed if i not in have]
    if not missing:
        return result
    asks = int((batch.result or {}).get(ASKS_KEY, 0))
    if asks < LOST_OUTPUT_ASKS:
        batch.result = {**(batch.result or {}), ASKS_KEY: asks + 1}
        why = (
            f"batch {batch.seq}: result {result.message_id} reports items {missing[:10]} done, but the database "
            "holds no output for them (a commit lost in a database crash, or deleted since): not recorded or "
            f"charged; asked again with the same command id {batch.id} ({asks + 1} of {LOST_OUTPUT_ASKS})"
        )
        resend(engine, session, run, batch, "lost-output", why)
        return None
    reason = (
        f"the worker reported this item done, but its output is not in the database after {asks} re-asks "
        "(deleted since, or lost in a database crash)"
    )
    failures = [*result.failures, *(ItemFailure(item_id=i, reason=reason, permanent=False) for i in missing)]
    processed = max(result.items_processed - len(missing), 0)
    status = ResultStatus.FAILED if len(failures) >= len(batch.item_ids) else ResultStatus.PARTIAL
    return result.model_copy(update={"failures": failures, "items_processed": processed, "status": status})
