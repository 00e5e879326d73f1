"""Starting a run: freeze the plan, estimate, reserve 1.2 × the estimate (or refuse with 402), advance.
A run with nothing to do at any enabled stage is refused with the reason (409), never "completed" empty."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import RunPlan, RunTarget
from services.orchestrator.errors import ConflictError, InsufficientCreditsError
from services.orchestrator.estimate import HISTORY_RUNS, Estimate, StageHistory, calibrate, estimate, with_account
from services.orchestrator.publishing import service as publishing
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.barrier import advance
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.window import available_for
from services.orchestrator.sites import service as sites
from shared.contracts import WORKER_STAGES, RunStatus, Stage, utcnow
from shared.db.models import Run, Site


class NothingPendingError(ConflictError):
    """No enabled stage has anything to work on (issue 17: it used to "complete" with 1/0)."""

    slug = "nothing-pending"


def nothing_to_do(plan: RunPlan, counts: dict[int, int], gate_acts: bool = False) -> str | None:
    """Why a run would have nothing to do, or None when some enabled work stage has pending items, or
    drafts wait at a review gate that acts on its own (`gate_acts`: the site auto-approves)."""
    if any(counts.get(int(s), 0) and plan.stage_enabled.get(int(s), True) for s in WORKER_STAGES):
        return None
    if gate_acts and counts.get(int(Stage.REVIEW), 0):
        return None
    disabled = [f"stage {int(s)} ({s.label}) has {counts[int(s)]}" for s in WORKER_STAGES if counts.get(int(s))]
    review = counts.get(int(Stage.REVIEW), 0)
    waiting = f"; {review} drafts wait for review (approve or reject them)" if review else ""
    if disabled:
        return f"nothing to do: the stages with pending items are disabled ({', '.join(disabled)}){waiting}"
    return f"nothing to do: no keyword awaits clustering and no stage has pending items (import keywords){waiting}"


def new_run_id(trigger: str) -> str:
    # Readable and sortable; the suffix keeps two sites started in the same second apart.
    return f"run_{utcnow():%Y%m%d_%H%M%S}_{trigger}_{secrets.token_hex(3)}"


def _history(rows: list[tuple[int, int, int, Decimal, dict[str, Any]]], engine: Engine) -> dict[int, StageHistory]:
    return calibrate(((s, n, c, cr, RunPlan.model_validate(o)) for s, n, c, cr, o in rows), engine.costs)


async def plan_and_estimate(
    engine: Engine,
    session: AsyncSession,
    site_id: str,
    target: RunTarget | None = None,
    max_credits: Decimal | None = None,
) -> tuple[RunPlan, dict[int, int], Estimate]:
    """The plan from the site's config; a targeted run also switches off the stages outside its target,
    so the estimate (and the barrier) see only the targeted part of the pending work. `max_credits` (an
    automation rule's limit) caps the run's credits below the site's own cap."""
    config = await sites.site_config(session, site_id)
    plan = RunPlan.from_config(config, await sites.global_shares(session))
    if target is not None:
        enabled = {s: on and target.includes(s) for s, on in plan.stage_enabled.items()}
        plan = plan.model_copy(update={"target": target, "stage_enabled": enabled})
    if max_credits is not None:
        own = plan.limits.max_credits_per_run
        cap = min(own, max_credits) if own > 0 else max_credits
        plan = plan.model_copy(update={"limits": plan.limits.model_copy(update={"max_credits_per_run": cap})})
    counts = await sites.pending_counts(session, site_id, target)
    history = _history(await repo.stage_history(session, HISTORY_RUNS, site_id=site_id), engine)
    if any(on and stage not in history for stage, on in plan.stage_enabled.items()):
        account_id = await repo.account_of_site(session, site_id)
        account = _history(await repo.stage_history(session, HISTORY_RUNS, account_id=account_id), engine)
        history = with_account(history, account)
    return plan, counts, estimate(counts, plan, engine.costs, history=history)


async def start_in_session(
    engine: Engine,
    session: AsyncSession,
    site: Site,
    trigger: str,
    target: RunTarget | None = None,
    max_credits: Decimal | None = None,
) -> Run:
    """Create and advance a run inside the caller's transaction (API, scheduler, ingest event, or a
    targeted run such as a regeneration: same reservation, same charging, same one-active-run rule).

    The run row goes in first and the account is locked after: every other path locks run then
    account, and the one-active-run index may make this insert wait on a transaction that holds a run
    of this site, so taking the account lock first could deadlock with it.
    """
    plan, counts, est = await plan_and_estimate(engine, session, site.id, target, max_credits)
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
            **({"target": target.model_dump(mode="json")} if target else {}),
        },
        total_credits_used=Decimal(0),
        estimated_credits=est.total,
        reserved_credits=est.required,
        started_at=utcnow(),
    )
    session.add(run)
    await session.flush()  # the one-active-run index speaks here, not at commit
    # An untargeted run whose review gate auto-approves has work in the drafts waiting there.
    gate_acts = target is None and (await publishing.settings_of(session, site.id)).auto_approval_enabled
    if (why := nothing_to_do(plan, counts, gate_acts)) is not None:  # raising rolls the run back, as below
        raise NothingPendingError(why, pending={str(k): v for k, v in sorted(counts.items())})
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
        f"run started ({trigger}); pending {counts}; estimate {est.total} credits, reserved {est.required}"
        + (f"; targeted: {target.reason or f'{len(target.item_ids)} items of stage {target.stage}'}" if target else ""),
    )
    await advance(engine, session, run)
    return run
