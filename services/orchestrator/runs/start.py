"""Starting a run: freeze the plan, estimate, reserve 1.2 × the estimate (or refuse with 402), advance."""

from __future__ import annotations

import secrets
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import RunPlan
from services.orchestrator.errors import InsufficientCreditsError
from services.orchestrator.estimate import HISTORY_RUNS, Estimate, calibrate, estimate
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.window import available_for
from services.orchestrator.sites import service as sites
from shared.contracts import RunStatus, utcnow
from shared.db.models import Run, Site


def new_run_id(trigger: str) -> str:
    # Readable and sortable; the suffix keeps two sites started in the same second apart.
    return f"run_{utcnow():%Y%m%d_%H%M%S}_{trigger}_{secrets.token_hex(3)}"


async def plan_and_estimate(
    engine: Engine, session: AsyncSession, site_id: str
) -> tuple[RunPlan, dict[int, int], Estimate]:
    config = await sites.site_config(session, site_id)
    plan = RunPlan.from_config(config, await sites.global_shares(session))
    counts = await sites.pending_counts(session, site_id)
    recent = await repo.stage_history(session, site_id, HISTORY_RUNS)
    history = calibrate(((s, n, c, cr, RunPlan.model_validate(o)) for s, n, c, cr, o in recent), engine.costs)
    return plan, counts, estimate(counts, plan, engine.costs, history=history)


async def start_in_session(engine: Engine, session: AsyncSession, site: Site, trigger: str) -> Run:
    """Create and advance a run inside the caller's transaction (API, scheduler or ingest event).

    The run row goes in first and the account is locked after: every other path locks run then
    account, and the one-active-run index may make this insert wait on a transaction that holds a run
    of this site, so taking the account lock first could deadlock with it.
    """
    plan, counts, est = await plan_and_estimate(engine, session, site.id)
    run = Run(
        id=new_run_id(trigger),
        site_id=site.id,
        account_id=site.account_id,
        trigger=trigger,
        status=RunStatus.RUNNING.value,
        current_stage=0,
        options=plan.model_dump(mode="json"),
        initial_snapshot={
            "pending": {str(k): v for k, v in counts.items() if k <= 6},
            "total": sum(v for k, v in counts.items() if k <= 6),
            "estimate": est.model_dump(mode="json"),
        },
        total_credits_used=Decimal(0),
        estimated_credits=est.total,
        reserved_credits=est.required,
        started_at=utcnow(),
    )
    session.add(run)
    await session.flush()  # the one-active-run index speaks here, not at commit
    balance, free = await available_for(session, site.account_id)
    free += run.reserved_credits  # not counting this run's own hold
    if free < est.required:  # raising rolls the run back with the transaction (or savepoint)
        raise InsufficientCreditsError(
            f"not enough credits: this run is estimated at {est.total}, starting needs {est.required} "
            f"(1.2 × estimate) and the account has {free} available",
            estimate=str(est.total),
            required=str(est.required),
            balance=str(balance),
            available=str(free),
            shortfall=str(est.required - free),
        )
    engine.event(
        session,
        run,
        0,
        "started",
        f"run started ({trigger}); pending {counts}; estimate {est.total} credits, reserved {est.required}",
    )
    await advance(engine, session, run)
    return run
