"""The run estimate: the seed assumptions as the cold start, the site's recent runs as its calibration (issue 10)."""

from __future__ import annotations

from decimal import Decimal

from services.orchestrator.config import RunPlan
from services.orchestrator.costs import CostTable
from services.orchestrator.estimate import (
    Estimate,
    StageEstimate,
    batch_estimate,
    calibrate,
    estimate,
    revise,
    snapshot_cost_factor,
    with_account,
)
from shared.contracts import StageOptions

COSTS = CostTable()


def plan(**options: object) -> RunPlan:
    return RunPlan(options=StageOptions(**options))  # type: ignore[arg-type]


def by_stage(est: Estimate) -> dict[int, StageEstimate]:
    return {s.stage: s for s in est.stages}


def test_cold_start_uses_the_seed_assumptions() -> None:
    p = plan(target_words=1000, ideas_per_cluster=1)
    est = estimate({1: 20}, p, COSTS)
    items = {s.stage: s.items for s in est.stages}
    # 20 keywords → 5 clusters → 5 ideas → 5 tasks → 5 drafts → 10 image prompts
    assert items == {1: 20, 2: 5, 3: 5, 4: 5, 5: 5, 6: 10}
    assert all(s.basis == "cold start" and s.cost_factor == 1 and s.history_runs == 0 for s in est.stages)
    credits = {s.stage: s.credits for s in est.stages}
    assert credits[1] == 4 and credits[2] == 10 and credits[4] == 10  # 5 × 1000 words at 500 per credit
    assert est.required == (est.total * Decimal("1.2")).quantize(Decimal("0.0001"))


def test_history_calibrates_costs_and_yields_and_shows_its_parts() -> None:
    p = plan(target_words=1000, ideas_per_cluster=1)
    # two earlier runs: 3 keywords per cluster (not 4), drafts 30 % over the target, 3 prompts per draft
    recent = [
        (1, 12, 4, Decimal("2.4"), p),
        (1, 18, 6, Decimal("3.6"), p),
        (2, 10, 10, Decimal(20), p),
        (4, 10, 10, Decimal(26), p),  # 10 drafts × 1300 words = 26 credits, cold start says 20
        (5, 10, 30, Decimal(15), p),  # 30 prompts × 0.5, cold start says 20 × 0.5
    ]
    history = calibrate(((s, n, c, cr, pl) for s, n, c, cr, pl in recent), COSTS)
    est = estimate({1: 30}, p, COSTS, history=history)
    parts = by_stage(est)
    s1, s2, s4, s5 = parts[1], parts[2], parts[4], parts[5]
    assert s1.basis == "history" and s1.history_runs == 2 and s1.cost_factor == 1
    assert s1.yield_factor == Decimal("1.333")
    assert s2.items == 10  # 30 keywords at 3 per cluster
    assert s4.cost_factor == Decimal("1.3") and s4.credits == Decimal(26)
    assert s4.cold_start_credits == Decimal(20)
    assert parts[6].items == 30 and parts[3].basis == "cold start"
    assert s5.yield_factor == Decimal("1.5")


def test_a_changed_option_still_counts_with_history() -> None:
    before = plan(target_words=1000)
    history = calibrate([(4, 10, 10, Decimal(26), before)], COSTS)  # 30 % over the target
    now = plan(target_words=2000)
    s4 = by_stage(estimate({4: 10}, now, COSTS, history=history))[4]
    assert s4.credits == Decimal(52)  # the formula follows the option


def test_batches_are_estimated_with_the_runs_calibration() -> None:
    p = plan(target_words=1000)
    est = estimate({4: 10}, p, COSTS, history=calibrate([(4, 10, 10, Decimal(26), p)], COSTS))
    snapshot = {"estimate": est.model_dump(mode="json")}  # as a run freezes it
    factor = snapshot_cost_factor(snapshot, 4)
    assert factor == Decimal("1.3") and snapshot_cost_factor({}, 4) == 1
    assert batch_estimate(4, 5, p, COSTS, cost_factor=factor) == Decimal(13)


def test_a_new_site_starts_from_its_accounts_history_per_stage() -> None:
    p = plan(target_words=1000, ideas_per_cluster=1)
    site = calibrate([(4, 10, 10, Decimal(26), p)], COSTS)  # the site has written drafts, nothing else yet
    account = calibrate([(1, 30, 3, Decimal(6), p), (4, 20, 20, Decimal(40), p)], COSTS)  # 10 keywords a cluster
    est = estimate({1: 40}, p, COSTS, history=with_account(site, account))
    parts = by_stage(est)
    assert parts[1].basis == "account history" and parts[1].yield_factor == Decimal("0.4")
    assert parts[2].items == 4  # 40 keywords at the account's 10 a cluster, not the seed's 4
    assert parts[4].basis == "history" and parts[4].cost_factor == Decimal("1.3")  # the site's own wins
    assert parts[5].basis == "cold start"  # nobody in the account has run it


def test_a_revision_keeps_the_done_stage_and_projects_the_rest_from_what_is_pending() -> None:
    """312 keywords: the seed expects 78 clusters; stage 1 made 10. The revision takes stage 1 at its charge and
    the later stages from the 10 clusters, with the factors the run froze at its start; the run's limits hold."""
    p = plan(target_words=1000, ideas_per_cluster=1)
    history = calibrate([(4, 4, 4, Decimal(12), p)], COSTS)  # drafts ran 50 % over: cost factor 1.5
    start = estimate({1: 312}, p, COSTS, history=history)
    assert by_stage(start)[2].items == 78 and by_stage(start)[4].cost_factor == Decimal("1.5")
    done = StageEstimate(stage=1, items=312, credits=Decimal("62.4"), basis="actual")
    new = revise(start, [done], {1: 0, 2: 10}, p, COSTS)
    parts = by_stage(new)
    assert parts[1] == done
    assert {s: parts[s].items for s in range(2, 7)} == {2: 10, 3: 10, 4: 10, 5: 10, 6: 20}
    assert parts[4].basis == "history" and parts[4].credits == Decimal(30)  # 10 × 1000 words / 500 × 1.5
    assert new.total == sum(s.credits for s in new.stages) < start.total
    assert new.required == (new.total * Decimal("1.2")).quantize(Decimal("0.0001"))
    # Keywords that failed stage 1 are pending for stage 1 again, but this run is past it: not counted twice.
    assert revise(start, [done], {1: 5, 2: 10}, p, COSTS) == new
    capped = plan(target_words=1000, ideas_per_cluster=1).model_copy(deep=True)
    capped.limits.max_credits_per_run = Decimal(50)
    assert revise(start, [done], {2: 10}, capped, COSTS).total == Decimal(50)
