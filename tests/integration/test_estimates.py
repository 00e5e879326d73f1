"""Estimates from what things really cost (issue 10), on the real stack: after a site's first run, the estimate of
its next one is calibrated by what that run really used, and lands within ±10 % of the actual cost, for the
demo's settings and two other configurations. The estimate shows its parts (basis, factors) per stage."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.helpers import TOPICS, configure, create_site, import_keywords, start_run, wait_run

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "demo": {},  # the demo's site: every default
    "long-drafts-high-images": {"options": {"target_words": 1500, "image_quality": "high", "ideas_per_cluster": 2}},
    "no-images": {"options": {"target_words": 600}, "stage_enabled": {"5": False, "6": False}},
}


def keywords(topics: range) -> list[dict[str, Any]]:
    return [
        {"keyword": f"{head} {modifier}", "volume": 1000 - 50 * i}
        for head, modifiers in (TOPICS[t] for t in topics)
        for i, modifier in enumerate(modifiers[:4])
    ]


def off_by(estimate: Decimal, actual: Decimal) -> float:
    return float(abs(estimate - actual) / actual)


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_the_next_runs_estimate_is_within_ten_percent_of_its_cost(api: httpx.Client, name: str) -> None:
    site = create_site(api, f"estimate-{name}")
    if CONFIGURATIONS[name]:
        configure(api, site, **CONFIGURATIONS[name])
    import_keywords(api, site, keywords(range(0, 2)))
    cold = api.get(f"/sites/{site}/estimate").json()
    assert {s["basis"] for s in cold["stages"]} == {"cold start"}
    first = wait_run(api, start_run(api, site)["run_id"])
    assert first["status"] == "completed" and first["stopped_reason"] is None, first

    import_keywords(api, site, keywords(range(2, 4)))  # the same shape of work again: 2 topics of 4 keywords
    est = api.get(f"/sites/{site}/estimate").json()
    parts = {s["stage"]: s for s in est["stages"]}
    assert parts[1]["basis"] == "history" and parts[1]["history_runs"] == 1
    assert parts[4]["basis"] == "history" and Decimal(parts[4]["cold_start_credits"]) > 0
    second = wait_run(api, start_run(api, site)["run_id"])
    assert second["status"] == "completed" and second["stopped_reason"] is None, second

    estimated, actual = Decimal(est["total"]), Decimal(second["total_credits_used"])
    cold_total, cold_actual = Decimal(cold["total"]), Decimal(first["total_credits_used"])
    print(f"{name}: cold start {cold_total} vs {cold_actual} ({off_by(cold_total, cold_actual):+.0%}); "
          f"calibrated {estimated} vs {actual} ({off_by(estimated, actual):.1%})")  # fmt: skip
    assert off_by(estimated, actual) <= 0.10, (name, est, second["stages"])
