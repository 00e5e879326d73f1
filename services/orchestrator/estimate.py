"""Credit estimate for a run before it starts: items and credits per stage, from the site's pending
counts, the run's item limits, the cost table and what the site's recent runs really used.

Later stages also process what earlier stages of the same run will create, so the estimate projects those
counts forward. Cold start (a site without history): the seed assumptions (`Assumptions`: 4 keywords per
cluster, 2 image prompts per draft, drafts of exactly the target length). With history, each stage is
calibrated by two factors measured over the site's last HISTORY_RUNS runs that did that stage's work:
- `cost_factor`: credits really charged ÷ what the cold-start formula gives for the same items under those
  runs' own plans (e.g. drafts that ran 30 % over the target words: 1.3);
- `yield_factor`: items created ÷ items the cold-start assumptions expect (clusters per keyword, ideas per
  cluster, prompts per draft; failed and held-back items lower it).
Factors, not raw per-item costs, so a changed option (target words, image quality) or cost table still
counts: the formula follows the change, the factor carries the site's habits. Each stage shows its parts.

A new site of an account that has run others starts from the account's history instead of the seeds (per
stage, the account's latest runs over all its sites; basis "account history"): its model, its cost table
and its habits of target length are the same, so its factors are a closer start than the seeds. Only the
account's very first run of a stage is estimated from the seeds alone.

Such a first run cannot know how many clusters its keywords make, so its estimate errs high; once its stage 1
has made them, `revise` estimates the rest from the clusters really pending (runs/revision.py), and the run's
reservation follows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.orchestrator.config import RunPlan
from services.orchestrator.costs import CostTable
from shared.contracts import ImageUsage, Usage

MARGIN = Decimal("1.2")  # a run needs 1.2 × its estimate available before it may start
HISTORY_RUNS = 5  # the site's latest runs whose stage results calibrate the estimate
FACTOR_QUANTUM = Decimal("0.001")


class Assumptions(BaseModel):
    """The cold start's seeds. Clusters per keyword is the one a cold start cannot know (it depends on the
    keywords and the site's own calibration), so the seed sits at the many-clusters end of what was measured
    and a cold start errs high: small topical sets make 2-4 keywords a cluster, the bundled 312-keyword example
    ~31 (its cold estimate 592.80 credits against a run of 130.38, 2026-12-02). Erring low would stop runs
    for budget midway; from a site's second run (or its account's) the yield is measured."""

    keywords_per_cluster: float = 4.0
    image_prompts_per_draft: float = 2.0


class StageHistory(BaseModel):
    """One stage's work over the site's recent runs, next to what the cold start would have said of it."""

    stage: int
    runs: int
    items: int  # taken in and attempted (processed + failed)
    created: int
    credits: Decimal
    cold_credits: Decimal  # the cold-start formula for the same items under each run's own plan
    cold_created: float  # the children the cold-start assumptions expect of those items
    scope: Literal["site", "account"] = "site"  # whose runs: the site's own, or its account's other sites'


class StageEstimate(BaseModel):
    stage: int
    items: int
    credits: Decimal
    basis: Literal["cold start", "history", "account history", "actual"] = Field(
        default="cold start",
        description="history: calibrated by the site's recent runs of this stage; account history: by the "
        "account's recent runs of it on other sites (a site that has not run the stage yet); actual: the run "
        "has done this stage, items and credits are what it took in and charged (a revised estimate)",
    )
    cold_start_credits: Decimal = Field(default=Decimal(0), description="The cost table and seed assumptions alone")
    cost_factor: Decimal = Field(default=Decimal(1), description="Credits charged ÷ cold-start credits, recent runs")
    yield_factor: Decimal = Field(
        default=Decimal(1), description="Items created ÷ items the seed assumptions expect, recent runs"
    )
    history_runs: int = Field(default=0, description="Recent runs that did this stage's work")


class Estimate(BaseModel):
    stages: list[StageEstimate]
    total: Decimal
    required: Decimal  # MARGIN × total
    assumptions: Assumptions


def _cap(n: int, limit: int) -> int:
    return min(n, limit) if limit else n


def cold_credits(stage: int, items: int, plan: RunPlan, costs: CostTable, a: Assumptions) -> Decimal:
    """What `items` items of `stage` cost by the cost table and the seed assumptions."""
    opts = plan.options
    usage = {
        1: Usage(keywords_clustered=items),
        2: Usage(clusters_ideated=items),
        3: Usage(),
        4: Usage(words_written=items * opts.target_words),
        5: Usage(image_prompts=math.ceil(items * a.image_prompts_per_draft)),
        6: Usage(images=[ImageUsage(size=opts.image_size, quality=opts.image_quality, count=items)]),
    }[stage]
    return costs.credits(usage)


def cold_children(stage: int, items: float, plan: RunPlan, a: Assumptions) -> float:
    """The items the next stage gets from `items` items of `stage`, by the seed assumptions."""
    per_item = {
        1: 1 / a.keywords_per_cluster,  # keywords → clusters (new ones)
        2: float(plan.options.ideas_per_cluster),
        3: 1.0,  # an idea → its writer task
        4: 1.0,  # a task → its draft
        5: a.image_prompts_per_draft,
        6: 1.0,
    }[stage]
    return items * per_item


def calibrate(
    results: Iterable[tuple[int, int, int, Decimal, RunPlan]], costs: CostTable, a: Assumptions | None = None
) -> dict[int, StageHistory]:
    """(stage, items attempted, items created, credits, that run's plan) of recent runs → per-stage history."""
    a = a or Assumptions()
    out: dict[int, StageHistory] = {}
    for stage, items, created, credits, plan in results:
        if items <= 0 or stage > 6:
            continue
        h = out.setdefault(
            stage,
            StageHistory(stage=stage, runs=0, items=0, created=0, credits=Decimal(0), cold_credits=Decimal(0),
                         cold_created=0.0),
        )  # fmt: skip
        h.runs += 1
        h.items += items
        h.created += created
        h.credits += credits
        h.cold_credits += cold_credits(stage, items, plan, costs, a)
        h.cold_created += cold_children(stage, items, plan, a)
    return out


def with_account(site: dict[int, StageHistory], account: dict[int, StageHistory]) -> dict[int, StageHistory]:
    """The site's own history per stage, and the account's for the stages the site has none of."""
    fallback = {stage: h.model_copy(update={"scope": "account"}) for stage, h in account.items() if stage not in site}
    return {**fallback, **site}


def _factors(h: StageHistory | None) -> tuple[Decimal, Decimal]:
    if h is None:
        return Decimal(1), Decimal(1)
    cost = (h.credits / h.cold_credits).quantize(FACTOR_QUANTUM) if h.cold_credits > 0 else Decimal(1)
    made = (Decimal(h.created) / Decimal(h.cold_created)).quantize(FACTOR_QUANTUM) if h.cold_created > 0 else Decimal(1)
    return cost, made


def estimate(
    pending: dict[int, int],
    plan: RunPlan,
    costs: CostTable,
    assume: Assumptions | None = None,
    history: dict[int, StageHistory] | None = None,
) -> Estimate:
    a, history = assume or Assumptions(), history or {}
    parts = {}
    for stage in range(1, 7):
        cost_factor, yield_factor = _factors(h := history.get(stage))
        parts[stage] = StageEstimate(
            stage=stage,
            items=0,
            credits=Decimal(0),
            basis=("history" if h.scope == "site" else "account history") if h else "cold start",
            cost_factor=cost_factor,
            yield_factor=yield_factor,
            history_runs=h.runs if h else 0,
        )
    return _project(pending, plan, costs, a, parts)


def revise(
    frozen: Estimate, done: list[StageEstimate], pending: dict[int, int], plan: RunPlan, costs: CostTable
) -> Estimate:
    """The run's estimate once its first stages are done: those at what they cost (`done`, basis "actual"),
    the rest projected from the items now pending (e.g. the clusters stage 1 made) with the factors the run
    froze at its start."""
    fixed = {s.stage: s for s in done}
    parts = {s.stage: fixed.get(s.stage, s) for s in frozen.stages}
    return _project(pending, plan, costs, frozen.assumptions, parts, fixed=frozenset(fixed))


def _project(
    pending: dict[int, int],
    plan: RunPlan,
    costs: CostTable,
    a: Assumptions,
    parts: dict[int, StageEstimate],
    fixed: frozenset[int] = frozenset(),
) -> Estimate:
    """Items and credits per stage from the pending counts, each stage also getting what the stage before it
    is expected to create; stages in `fixed` are taken as they are (already done: their output is pending)."""
    lim, on = plan.limits, plan.stage_enabled

    def children(stage: int, items: int) -> int:
        # the enabled stage's expected output, by the seed assumptions × the site's yield
        if not on[stage] or stage in fixed:
            return 0
        return math.ceil(cold_children(stage, items, plan, a) * float(parts[stage].yield_factor))

    items: dict[int, int] = {}
    stages = []
    for stage in range(1, 7):
        if stage in fixed:
            items[stage] = parts[stage].items
            stages.append(parts[stage])
            continue
        came = pending.get(stage, 0) + (children(stage - 1, items[stage - 1]) if stage > 1 else 0)
        items[stage] = _cap(came, lim.for_stage(stage)) if on[stage] else 0
        cold = cold_credits(stage, items[stage], plan, costs, a)
        stages.append(
            parts[stage].model_copy(
                update={
                    "items": items[stage],
                    "credits": (cold * parts[stage].cost_factor).quantize(Decimal("0.0001")),
                    "cold_start_credits": cold,
                }
            )
        )
    total = sum((s.credits for s in stages), Decimal(0))
    if lim.max_credits_per_run:
        total = min(total, lim.max_credits_per_run)
    return Estimate(stages=stages, total=total, required=(total * MARGIN).quantize(Decimal("0.0001")), assumptions=a)


def batch_estimate(
    stage: int,
    items: int,
    plan: RunPlan,
    costs: CostTable,
    assume: Assumptions | None = None,
    cost_factor: Decimal = Decimal(1),
) -> Decimal:
    """What releasing one batch of `items` items of `stage` is expected to cost (gates caps and shares);
    `cost_factor`: the stage's calibration from the run's estimate."""
    cold = cold_credits(stage, items, plan, costs, assume or Assumptions())
    return (cold * cost_factor).quantize(Decimal("0.0001"))


def snapshot_cost_factor(snapshot: dict[str, Any] | None, stage: int) -> Decimal:
    """The stage's cost factor from the estimate a run froze at its start (1 for runs from before factors)."""
    for part in ((snapshot or {}).get("estimate") or {}).get("stages", []):
        if part.get("stage") == stage and part.get("cost_factor") is not None:
            return Decimal(str(part["cost_factor"]))
    return Decimal(1)
