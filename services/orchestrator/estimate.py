"""Credit estimate for a run before it starts: items and credits per stage, from the site's pending
counts, the run's item limits and the cost table.

Later stages also process what earlier stages of the same run will create, so the estimate projects
those counts forward with explicit assumptions (`Assumptions`), shown to the user with the result.
"""

from __future__ import annotations

import math
from decimal import Decimal

from pydantic import BaseModel

from services.orchestrator.config import RunPlan
from services.orchestrator.costs import CostTable
from shared.contracts import ImageUsage, Usage

MARGIN = Decimal("1.2")  # a run needs 1.2 × its estimate available before it may start


class Assumptions(BaseModel):
    keywords_per_cluster: float = 4.0  # measured on the bundled example set
    image_prompts_per_draft: float = 2.0


class StageEstimate(BaseModel):
    stage: int
    items: int
    credits: Decimal


class Estimate(BaseModel):
    stages: list[StageEstimate]
    total: Decimal
    required: Decimal  # MARGIN × total
    assumptions: Assumptions


def _cap(n: int, limit: int) -> int:
    return min(n, limit) if limit else n


def estimate(pending: dict[int, int], plan: RunPlan, costs: CostTable, assume: Assumptions | None = None) -> Estimate:
    a = assume or Assumptions()
    opts, lim, on = plan.options, plan.limits, plan.stage_enabled
    keywords = _cap(pending.get(1, 0), lim.for_stage(1)) if on[1] else 0
    new_clusters = math.ceil(keywords / a.keywords_per_cluster) if keywords else 0
    clusters = _cap(pending.get(2, 0) + new_clusters, lim.for_stage(2)) if on[2] else 0
    ideas = _cap(pending.get(3, 0) + clusters * opts.ideas_per_cluster, lim.for_stage(3)) if on[3] else 0
    tasks = _cap(pending.get(4, 0) + ideas, lim.for_stage(4)) if on[4] else 0
    drafts = _cap(pending.get(5, 0) + tasks, lim.for_stage(5)) if on[5] else 0
    prompts_new = math.ceil(drafts * a.image_prompts_per_draft)
    images = _cap(pending.get(6, 0) + prompts_new, lim.for_stage(6)) if on[6] else 0
    per_stage = {
        1: (keywords, costs.credits(Usage(keywords_clustered=keywords))),
        2: (clusters, costs.credits(Usage(clusters_ideated=clusters))),
        3: (ideas, Decimal(0)),
        4: (tasks, costs.credits(Usage(words_written=tasks * opts.target_words))),
        5: (drafts, costs.credits(Usage(image_prompts=prompts_new))),
        6: (
            images,
            costs.credits(Usage(images=[ImageUsage(size=opts.image_size, quality=opts.image_quality, count=images)])),
        ),
    }
    stages = [StageEstimate(stage=s, items=n, credits=c) for s, (n, c) in per_stage.items()]
    total = sum((s.credits for s in stages), Decimal(0))
    if lim.max_credits_per_run:
        total = min(total, lim.max_credits_per_run)
    return Estimate(stages=stages, total=total, required=(total * MARGIN).quantize(Decimal("0.0001")), assumptions=a)


def batch_estimate(
    stage: int, items: int, plan: RunPlan, costs: CostTable, assume: Assumptions | None = None
) -> Decimal:
    """What releasing one batch of `items` items of `stage` is expected to cost (gates caps and shares)."""
    a = assume or Assumptions()
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
