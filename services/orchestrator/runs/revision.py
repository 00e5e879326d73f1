"""The estimate revised once stage 1 is done: what the run's start could not know is its cluster yield.

A site's first run (and an account's) estimates clusters from a seed of 4 keywords per cluster, the many-clusters
end of what was measured, so it errs high: the demo's 312 keywords make ~10 clusters, not 79. Every later stage
scales with the clusters, so once they exist the rest of the run is estimated again: stage 1 at what it charged,
stages 2-6 from the clusters really pending, with the factors the run froze at its start. The reservation then
follows the revision (1.2 × the revised total): an over-estimate stops holding credits that other sites' runs of
the account could use, and an under-estimate grows the hold while the account has free credits (if it has not,
the release window stops the run for budget when it gets there, as before).

Runs with the row locked, inside the caller's transaction, between stage 1's close and stage 2's start.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import RunPlan
from services.orchestrator.estimate import Estimate, StageEstimate, revise
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.window import reserve
from services.orchestrator.sites import service as sites
from shared.contracts import Stage
from shared.db.models import Run


async def after_clustering(engine: Engine, session: AsyncSession, run: Run, plan: RunPlan) -> None:
    """Revise the run's estimate and reservation from the clusters stage 1 made (once per run)."""
    frozen = (run.initial_snapshot or {}).get("estimate")
    sr = await repo.stage_result(session, run.id, Stage.CLUSTER)
    if run.revised_estimate is not None or frozen is None or sr is None or sr.status != "completed":
        return  # revised already, a run from before estimates, or stage 1 had nothing to do (nothing to learn)
    start = Estimate.model_validate(frozen)
    done = StageEstimate(stage=int(Stage.CLUSTER), items=sr.items_in, credits=sr.credits, basis="actual")
    pending = await sites.pending_counts(session, run.site_id, plan.target)
    new = revise(start, [done], pending, plan, engine.costs)
    run.revised_estimate = new.model_dump(mode="json")
    run.estimated_credits = new.total
    held = run.reserved_credits
    if new.required <= held:
        run.reserved_credits = new.required
        change = f"reservation {held:.2f} → {new.required:.2f}"
    elif await reserve(session, run, new.required):
        change = f"reservation grown {held:.2f} → {new.required:.2f}"
    else:
        change = f"reservation stays {held:.2f}: the account's free credits do not cover {new.required:.2f}"
    clusters = next(s.items for s in new.stages if s.stage == int(Stage.IDEATE))
    expected = next(s.items for s in start.stages if s.stage == int(Stage.IDEATE))
    engine.event(
        session,
        run,
        Stage.CLUSTER,
        "estimate-revised",
        f"estimate revised after clustering: {clusters} clusters to ideate (the start expected {expected}); "
        f"{new.total:.2f} credits (was {start.total:.2f}); {change}",
    )
