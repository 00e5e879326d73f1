"""The release window inside a stage: at most `Engine.release_window(stage)` batches out at once (per worker
process of the stage, runs/census.py; `Settings.clustering_window` in stage 1, where a site's batches are
clustered in passes), each released only when its estimated cost fits the run's cap, the stage's budget share
and the run's credit reservation (grown from the account's free credits when the estimate was low)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.accounts import service as accounts
from services.orchestrator.config import RunPlan
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import Engine
from shared.contracts import RunStatus, Stage, StageCommand, utcnow
from shared.db.models import Run, StageBatch
from shared.delivery import command_key
from shared.topics import STAGE_COMMAND_TOPICS


async def release_window(
    engine: Engine, session: AsyncSession, run: Run, stage: Stage, plan: RunPlan, out: tuple[int, Decimal]
) -> int | None:
    """How many pending batches went out, given the run's batches `out` (released, any stage) and their
    estimated cost; None when pending batches were closed instead (a spent budget share), so the caller counts
    the stage's batches again."""
    released = 0
    in_flight, in_flight_cost = out
    window = engine.release_window(stage)
    free = window - in_flight
    delay = plan.delay_between_batches_seconds
    if delay:
        last = await repo.last_release(session, run.id, stage)
        if last is not None and utcnow() < last + timedelta(seconds=delay):
            return released
        free = min(free, 1)  # with a delay, one batch at a time
    if free <= 0:
        return released
    stage_share = plan.stage_share(stage)
    # read (and locked) only when a share applies: without a per-run cap there is none
    sr = await repo.stage_result(session, run.id, stage) if stage_share is not None else None
    cap = plan.limits.max_credits_per_run
    for batch in await repo.pending_batches(session, run.id, stage, free):
        projected = run.total_credits_used + in_flight_cost + batch.estimate
        if cap and projected > cap:
            halt_for_budget(
                engine,
                session,
                run,
                stage,
                f"run credit cap {cap} reached (used {run.total_credits_used}, in flight "
                f"{in_flight_cost}, next batch ~{batch.estimate})",
            )
            return released
        if stage_share is not None and sr is not None:
            _, stage_in_flight = await repo.inflight(session, run.id, stage)
            if sr.credits + stage_in_flight + batch.estimate > stage_share:
                skipped = await repo.close_pending_batches(session, run.id, "skipped", stage)
                sr.stopped_reason, sr.partial = "budget", True
                engine.event(
                    session,
                    run,
                    stage,
                    "budget",
                    f"stage {int(stage)} budget share {stage_share} spent ({sr.credits} used); "
                    f"{skipped} batches left for the next run",
                )
                return None
        if not await reserve(session, run, projected):
            halt_for_budget(engine, session, run, stage, "account balance cannot cover the next batch")
            return released
        release(engine, session, run, batch, plan)
        released += 1
        in_flight_cost += batch.estimate
    return released


def halt_for_budget(engine: Engine, session: AsyncSession, run: Run, stage: Stage, why: str) -> None:
    """Release nothing more; once in-flight batches are back, the barrier ends the run (`stop_for_budget`)."""
    run.stopped_reason = "budget"
    engine.event(session, run, stage, "budget", f"{why}; stopping at this batch boundary")


async def available_for(session: AsyncSession, account_id: str) -> tuple[Decimal, Decimal]:
    """(balance, available) of the account, with its row locked: the basis of a credit decision."""
    account = await accounts.lock_account(session, account_id)
    assert account is not None  # foreign key: a run always has its account
    return account.credit_balance, account.credit_balance - await repo.held_by_active_runs(session, account_id)


async def reserve(session: AsyncSession, run: Run, projected: Decimal) -> bool:
    """Make sure the run's reservation covers `projected` spend, growing it from free credits."""
    if projected <= run.reserved_credits:
        return True
    need = projected - run.reserved_credits
    _, free = await available_for(session, run.account_id)
    if free < need:
        return False
    run.reserved_credits += need
    return True


async def stop_for_budget(engine: Engine, session: AsyncSession, run: Run, stage: Stage) -> None:
    skipped = await repo.close_pending_batches(session, run.id, "skipped")
    sr = await repo.stage_result(session, run.id, stage)
    now = utcnow()
    if sr is not None and sr.status == "running":
        sr.status, sr.partial, sr.stopped_reason, sr.finished_at = "stopped", True, "budget", now
        sr.seconds = round((now - sr.started_at).total_seconds(), 3)
    run.status, run.completed_at = RunStatus.COMPLETED.value, now
    engine.event(
        session,
        run,
        stage,
        "completed",
        f"run stopped for budget at stage {int(stage)}; {skipped} batches left for the next run; "
        f"{run.total_credits_used:.2f} credits used",
    )


def command_of(run: Run, batch: StageBatch, plan: RunPlan) -> StageCommand:
    """The batch's command: its id is the batch id, the same for every send (a re-ask is the same command)."""
    return StageCommand(
        message_id=batch.id,
        account_id=run.account_id,
        site_id=run.site_id,
        run_id=run.id,
        stage=Stage(batch.stage),
        batch_seq=batch.seq,
        attempt=batch.attempt,
        item_ids=list(batch.item_ids),
        options=plan.options,
    )


def send(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, plan: RunPlan) -> None:
    command = command_of(run, batch, plan)
    engine.outbox.add(session, STAGE_COMMAND_TOPICS[batch.stage], command_key(command), command)


def resend(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, kind: str, why: str) -> None:
    """Send a released (or expired) batch's command again, same command id, next attempt; `why` goes to the
    run's activity as a warning of `kind`."""
    batch.attempt += 1
    send(engine, session, run, batch, RunPlan.model_validate(run.options))
    engine.event(session, run, batch.stage, kind, why, level="warning")


def release(engine: Engine, session: AsyncSession, run: Run, batch: StageBatch, plan: RunPlan) -> None:
    send(engine, session, run, batch, plan)
    batch.status, batch.released_at = "released", utcnow()
