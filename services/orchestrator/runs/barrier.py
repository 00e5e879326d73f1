"""The strict stage barrier: a stage is planned (pending items → batches) only when the previous one
has a result for every batch; then its batches go out through the release window. Every function here
runs with the run row locked, inside the caller's transaction."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import RunPlan
from services.orchestrator.estimate import batch_estimate, snapshot_cost_factor
from services.orchestrator.publishing.scheduling import Policy
from services.orchestrator.review import service as review
from services.orchestrator.runs import outcome, revision, truth
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.window import release_window, stop_for_budget
from services.orchestrator.sites import service as sites
from shared.contracts import RunStatus, Stage, new_message_id, utcnow
from shared.db.models import Run, StageBatch, StageRunResult


async def advance(engine: Engine, session: AsyncSession, run: Run) -> None:
    """Release batches of the current stage, or close it and open the next. The run row is locked."""
    plan = RunPlan.model_validate(run.options)
    while run.status == RunStatus.RUNNING.value:
        if run.current_stage == 0:
            await enter_stage(engine, session, run, Stage.CLUSTER, plan)
            continue
        stage = Stage(run.current_stage)
        census = await repo.batch_census(session, run.id)
        counts = census.of(stage)
        if counts.get("pending", 0) and run.stopped_reason is None:
            released = await release_window(engine, session, run, stage, plan, census.in_flight)
            if released is None:
                counts = await repo.batch_status_counts(session, run.id, stage)
            else:  # known without asking the database again (a statement per result group saved)
                counts["pending"] -= released
                counts["released"] = counts.get("released", 0) + released
        if counts.get("released", 0):
            return  # results still to come
        if counts.get("pending", 0) and run.stopped_reason is None:
            return  # waiting for a delay between batches to elapse (the ticker comes back)
        if run.stopped_reason == "budget":
            await stop_for_budget(engine, session, run, stage)
            return
        if not await finish_stage(engine, session, run, stage):
            return
        if stage is Stage.IMAGES:
            await review_gate(engine, session, run, plan)
            return
        if stage is Stage.CLUSTER:
            await revision.after_clustering(engine, session, run, plan)  # the cluster yield is known now
        sr = await repo.stage_result(session, run.id, stage)
        wait = timedelta(seconds=plan.delay_between_stages_seconds)
        if wait and sr is not None and sr.finished_at and sr.status != "skipped" and utcnow() < sr.finished_at + wait:
            return  # delay between stages; the ticker advances later
        await enter_stage(engine, session, run, Stage(stage + 1), plan)


async def enter_stage(engine: Engine, session: AsyncSession, run: Run, stage: Stage, plan: RunPlan) -> None:
    run.current_stage = int(stage)
    now = utcnow()
    if not plan.stage_enabled[int(stage)]:
        reason = "not targeted" if plan.target is not None and not plan.target.includes(stage) else "disabled"
        session.add(
            StageRunResult(
                run_id=run.id,
                stage=int(stage),
                status="skipped",
                failures=[],
                credits=Decimal(0),
                stopped_reason=reason,
                started_at=now,
                finished_at=now,
            )
        )
        await session.flush()
        engine.event(session, run, stage, "stage-skipped", f"stage {int(stage)} ({stage.label}): {reason}, skipped")
        return
    limit = plan.limits.for_stage(int(stage))
    ids = await sites.pending_ids(session, stage, run.site_id, limit + 1 if limit else None, plan.target)
    ids, held = await truth.hold_back(session, run, stage, ids)  # made from items this run failed
    limited = bool(limit) and len(ids) > limit
    ids = ids[:limit] if limit else ids
    size = plan.batch_sizes[int(stage)]
    factor = snapshot_cost_factor(run.initial_snapshot, int(stage))  # the site's calibration, as estimated
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    session.add_all(
        StageBatch(
            id=new_message_id(),
            run_id=run.id,
            stage=int(stage),
            seq=seq,
            item_ids=chunk,
            status="pending",
            estimate=batch_estimate(int(stage), len(chunk), plan, engine.costs, cost_factor=factor),
        )
        for seq, chunk in enumerate(chunks)
    )
    sr = StageRunResult(
        run_id=run.id,
        stage=int(stage),
        status="running" if chunks or held else "skipped",
        items_in=len(ids),
        batches_total=len(chunks),
        failures=[],
        credits=Decimal(0),
        partial=limited,
        stopped_reason="limit" if limited else None,
        started_at=now,
        finished_at=None if chunks or held else now,
    )
    session.add(sr)
    if held:
        truth.record_held(engine, session, run, stage, held, len(chunks), sr)
    await session.flush()
    if chunks:
        engine.event(
            session,
            run,
            stage,
            "stage-started",
            f"stage {int(stage)} ({stage.label}): {len(ids)} items in {len(chunks)} batches"
            + (f"; limited to {limit} per run, the rest waits for the next run" if limited else ""),
        )
    elif not held:
        engine.event(session, run, stage, "stage-skipped", f"stage {int(stage)} ({stage.label}): nothing pending")


async def finish_stage(engine: Engine, session: AsyncSession, run: Run, stage: Stage) -> bool:
    """Close the stage; False when the stage failed as a whole and with it the run."""
    sr = await repo.stage_result(session, run.id, stage)
    if sr is None or sr.status != "running":
        return True
    now = utcnow()
    sr.status, sr.finished_at = "completed", now
    sr.seconds = round((now - sr.started_at).total_seconds(), 3)
    sr.partial = sr.partial or sr.items_failed > 0
    # Item failures a worker reported leave the stage partial and the run goes on with what exists
    # (failed items stay pending for the next run). Only a stage where nothing was done because its
    # results never came (workers down: batches expired) fails the run, visibly.
    expired = (await repo.batch_status_counts(session, run.id, stage)).get("failed", 0)
    if expired and not sr.items_processed and not sr.items_skipped:
        first = sr.failures[0]["reason"] if sr.failures else "unknown"
        sr.status, sr.stopped_reason = "failed", "failed"
        run.status, run.completed_at, run.stopped_reason = RunStatus.FAILED.value, now, "failed"
        run.error_message = f"stage {int(stage)} ({stage.label}): all {sr.items_failed} items failed; first: {first}"
        engine.event(session, run, stage, "failed", run.error_message, level="error")
        return False
    engine.event(
        session,
        run,
        stage,
        "stage-completed",
        f"stage {int(stage)}: {sr.items_processed} processed, {sr.items_created} created, "
        f"{sr.items_failed} failed, {sr.credits:.2f} credits in {sr.seconds:.1f}s",
    )
    return True


async def review_gate(engine: Engine, session: AsyncSession, run: Run, plan: RunPlan) -> None:
    run.current_stage = int(Stage.REVIEW)
    ready = len(await sites.pending_ids(session, Stage.REVIEW, run.site_id, None, plan.target))
    limit = plan.limits.for_stage(int(Stage.REVIEW))
    admitted = min(ready, limit) if limit else ready
    now = utcnow()
    session.add(
        StageRunResult(
            run_id=run.id,
            stage=int(Stage.REVIEW),
            status="completed",
            items_in=ready,
            items_processed=admitted,
            failures=[],
            credits=Decimal(0),
            partial=admitted < ready,
            stopped_reason="limit" if admitted < ready else None,
            started_at=now,
            finished_at=now,
        )
    )
    auto = await review.auto_review(session, Policy.of(engine.settings), run.site_id, run.id, limit)
    run.status, run.completed_at = RunStatus.COMPLETED.value, now
    why = outcome.no_output(plan, await repo.stage_results(session, run.id))
    if why:
        run.stopped_reason, run.error_message = outcome.NO_OUTPUT, why
    engine.event(
        session,
        run,
        Stage.REVIEW,
        "completed",
        (f"run completed with {why}" if why else f"run completed: {admitted} drafts ready for review")
        + f"; {run.total_credits_used:.2f} credits used; reservation released"
        + (f"; {auto.summary()}" if auto is not None else ""),
        level="warning" if why else "info",
    )
