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
from shared.delivery import claim_inbox_many

RESULTS_CONSUMER = "orchestrator.results"


async def record_results(engine: Engine, session: AsyncSession, run_id: str, results: list[StageResult]) -> list[bool]:
    """Record results of run `run_id`, in order; per result False for a duplicate (already recorded).

    NotFoundError when a result names a command this orchestrator never issued for that run (the
    transaction is then rolled back; the caller dead-letters that record and applies the others).

    A statement per kind for the whole group, not per result (issue 13: the orchestrator's result application
    was its largest CPU cost, ~10 statements per result): the outputs behind the results read once per stage,
    the inbox rows claimed in one insert, the debits in one, the successes' failure streaks cleared in one per
    stage. The order of the results is kept in everything that depends on it (charges, counts, activity).
    """
    run = await repo.lock_run(session, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id!r} does not exist")
    batches = await repo.lock_batches(session, sorted({r.command_id for r in results}))
    for came in results:
        known = batches.get(came.command_id)
        if known is None or known.run_id != run_id:
            raise NotFoundError(f"result {came.message_id} names unknown command {came.command_id}")
    asked: set[str] = set()  # batches asked again in this group: a copy of the same result waits for the answer
    recorded: list[bool] = []
    progress = Progress()
    for part in distinct_batches(results):
        recorded += await record_part(engine, session, run, batches, part, asked, progress)
    progress.notify(engine, session, run)
    if any(recorded):
        await advance(engine, session, run)  # one barrier decision for the whole group
    return recorded


def distinct_batches(results: list[StageResult]) -> list[list[StageResult]]:
    """The group cut, in order, into parts that name each batch once: a second result for a batch is vetted
    after the first was applied, as one by one (it then finds the batch settled: a replay)."""
    parts: list[list[StageResult]] = [[]]
    for came in results:
        if any(r.command_id == came.command_id for r in parts[-1]):
            parts.append([])
        parts[-1].append(came)
    return parts


async def record_part(
    engine: Engine,
    session: AsyncSession,
    run: Run,
    batches: dict[str, StageBatch],
    results: list[StageResult],
    asked: set[str],
    progress: Progress,
) -> list[bool]:
    part = [batches[r.command_id] for r in results]
    have = await lost_output.outputs_held(session, run, part)
    checked: list[StageResult | None] = []
    for came, batch in zip(results, part, strict=True):
        vetted = (
            None
            if batch.id in asked
            else await lost_output.vet(engine, session, run, batch, came, have.get(batch.stage, set()))
        )
        if vetted is None:  # not recorded: its inbox row stays free for the answer to the new ask
            asked.add(batch.id)
        checked.append(vetted)
    claimed = await claim_inbox_many(session, RESULTS_CONSUMER, [v.message_id for v in checked if v is not None])
    todo: list[tuple[StageBatch, StageResult]] = []
    recorded: list[bool] = []
    for vetted in checked:
        if vetted is None or vetted.message_id not in claimed:
            recorded.append(False)
            continue
        todo.append((batches[vetted.command_id], vetted))
        recorded.append(True)
    if not todo:
        return recorded
    charges = await charge(engine, session, run, todo)
    stages: dict[int, StageRunResult | None] = {}
    streaks = Streaks(session)
    for (batch, vetted), charged in zip(todo, charges, strict=True):
        if batch.stage not in stages:
            stages[batch.stage] = await repo.stage_result(session, run.id, batch.stage)
        await apply(engine, session, run, batch, stages[batch.stage], vetted, charged, streaks, progress)
    await streaks.clear()
    return recorded


async def charge(
    engine: Engine, session: AsyncSession, run: Run, todo: list[tuple[StageBatch, StageResult]]
) -> list[Decimal]:
    """Debit each result's usage once per command (the ledger key), whenever it comes; in the group's order."""
    costs = [engine.costs.credits(result.usage) for _, result in todo]
    entries = [
        (
            f"debit:{result.command_id}",
            cost,
            {"stage": int(result.stage), "batch": batch.seq, "usage": result.usage.model_dump(mode="json")},
        )
        for (batch, result), cost in zip(todo, costs, strict=True)
        if cost > 0
    ]
    done = iter(await accounts.debit_many(session, run.account_id, run.id, entries))
    charged = [(next(done) or Decimal(0)) if cost > 0 else Decimal(0) for cost in costs]
    run.total_credits_used += sum(charged, Decimal(0))
    return charged


class Progress:
    """The group's settled batches, announced as one `batch-done` run event per stage (progress for live views;
    the dashboard renders a burst of events once anyway): one event per batch was a quarter of the records a
    batch put on the broker (issue 13)."""

    def __init__(self) -> None:
        self._done: dict[int, list[tuple[int, int, int, Decimal]]] = {}

    def add(self, batch: StageBatch, result: StageResult, charged: Decimal) -> None:
        self._done.setdefault(batch.stage, []).append(
            (batch.seq, result.items_processed, len(result.failures), charged)
        )

    def notify(self, engine: Engine, session: AsyncSession, run: Run) -> None:
        for stage, done in self._done.items():
            seqs = ", ".join(str(seq) for seq, *_ in done)
            processed, failed = sum(d[1] for d in done), sum(d[2] for d in done)
            credits = sum((d[3] for d in done), Decimal(0))
            label = f"batch {seqs}" if len(done) == 1 else f"batches {seqs}"
            engine.notify(
                session, run, stage, "batch-done", f"{label}: {processed} processed, {failed} failed, {credits} credits"
            )
        self._done.clear()


class Streaks:
    """The successes of a group's results end their items' failure streaks in one statement per stage. A result
    with failures records its outcomes at once, after the successes of its stage gathered so far."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._succeeded: dict[int, list[int]] = {}

    def succeeded(self, stage: int, items: list[int]) -> None:
        self._succeeded.setdefault(stage, []).extend(items)

    async def clear(self, stage: int | None = None) -> None:
        for s in [stage] if stage is not None else list(self._succeeded):
            await sites.clear_item_streaks(self._session, s, self._succeeded.pop(s, []))


async def apply(
    engine: Engine,
    session: AsyncSession,
    run: Run,
    batch: StageBatch,
    sr: StageRunResult | None,
    result: StageResult,
    charged: Decimal,
    streaks: Streaks,
    progress: Progress,
) -> None:
    if batch.status == "released":
        settle(batch, sr, result, charged)
    elif batch.status == "failed":  # expired at the deadline: accepted late, its items' failure undone
        waited = (utcnow() - batch.released_at).total_seconds() if batch.released_at else 0.0
        unfail(batch, sr)
        settle(batch, sr, result, charged, late=True)
        await track_items(engine, session, run, batch, result, streaks)
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
    progress.add(batch, result, charged)
    if result.failures:
        engine.event(
            session,
            run,
            batch.stage,
            "item-failures",
            f"batch {batch.seq}: {len(result.failures)} item(s) failed: {result.failures[0].reason[:200]}",
            level="warning",
        )
    await track_items(engine, session, run, batch, result, streaks)


async def track_items(
    engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, result: StageResult, streaks: Streaks
) -> None:
    """The items' failure streaks across runs (sites/parking.py): successes clear theirs, failures extend them,
    and an item that failed `park_after_failed_runs` runs in a row is parked, with an activity line."""
    if not result.failures:
        streaks.succeeded(batch.stage, [int(i) for i in batch.item_ids])
        return
    await streaks.clear(batch.stage)  # the group's earlier successes of this stage first, as one by one
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
