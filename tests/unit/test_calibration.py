"""The calibrated similarity decision (services.clusterer.calibration): scale-free, sample-aware, deterministic."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import adjusted_rand_score  # type: ignore[import-untyped, unused-ignore]

from bench.strategies import calibrated_pass, narrow_band, one_pass, pair_cosines
from services.clusterer import calibration
from services.clusterer.calibration import (
    FALLBACK_THRESHOLD,
    MIN_KEYWORDS,
    Radii,
    SpaceStats,
    calibrate_vectors,
    decide,
    neighbour_radii,
    neighbours_for,
)
from services.clusterer.clustering import Vectors, normalise


def topics(n: int, k: int, dim: int, spread: float, seed: int = 0) -> tuple[Vectors, npt.NDArray[np.intp]]:
    """`n` unit vectors around `k` random topic centres, topics of unequal size; vectors and their topic."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((k, dim)).astype(np.float32))
    which = rng.choice(k, n, p=rng.dirichlet(np.full(k, 3.0)))
    noise = spread * rng.standard_normal((n, dim)).astype(np.float32) / math.sqrt(dim)
    return normalise(centres[which] + noise), which


def test_planted_topics_are_found_without_a_threshold() -> None:
    vectors, truth = topics(800, 20, 64, spread=0.6)
    labels, _, result = calibrated_pass(vectors)
    assert adjusted_rand_score(truth, labels) > 0.9, result


def test_the_decision_does_not_depend_on_the_scale_of_the_similarities() -> None:
    """Pushing every vector towards one direction squeezes all cosines into a narrow high band; the calibrated
    clustering is the same, while a fixed threshold that suits the original collapses the band."""
    vectors, truth = topics(800, 20, 64, spread=0.7, seed=1)
    squeezed, _ = narrow_band(vectors)
    assert np.quantile(pair_cosines(squeezed), 0.05) > 0.79
    original, _, _ = calibrated_pass(vectors)
    narrow, _, _ = calibrated_pass(squeezed)
    assert adjusted_rand_score(truth, original) > 0.85
    assert adjusted_rand_score(original, narrow) > 0.9
    good_fixed = max((adjusted_rand_score(truth, one_pass(vectors, t)[0]), t) for t in np.arange(0.1, 0.9, 0.05))
    assert one_pass(squeezed, float(good_fixed[1]))[1] < 5  # the same number collapses the narrow band


def test_a_sample_with_radii_from_everything_picks_what_the_whole_set_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors, truth = topics(2000, 50, 48, spread=0.6, seed=2)
    whole = calibrate_vectors(vectors)
    monkeypatch.setattr(calibration, "SAMPLE", 400)
    sampled = calibrate_vectors(vectors)
    assert sampled.sample == 400 and whole.sample == 2000
    centred = normalise(vectors - vectors.mean(axis=0))
    a_whole = adjusted_rand_score(truth, one_pass(centred, whole.threshold)[0])
    a_sampled = adjusted_rand_score(truth, one_pass(centred, sampled.threshold)[0])
    assert a_sampled > 0.95 * a_whole, (whole, sampled)


def test_deterministic() -> None:
    vectors, _ = topics(500, 15, 32, spread=0.9, seed=3)
    assert calibrate_vectors(vectors) == calibrate_vectors(vectors.copy())


def test_radii_streamed_in_chunks_equal_radii_in_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors, _ = topics(700, 10, 16, spread=0.8, seed=4)
    sample = vectors[::7]
    whole = neighbour_radii(sample, [vectors], 5)
    monkeypatch.setattr(calibration, "_BLOCK_BUDGET", 500)  # a few rows at a time
    radii = Radii(sample, 5)
    for start in range(0, 700, 90):
        radii.add(vectors[start : start + 90])
    np.testing.assert_allclose(radii.result(), whole, rtol=1e-6)
    # the k-th OTHER row: itself (similarity 1) does not count
    sims = np.sort(sample @ vectors.T, axis=1)[:, ::-1]
    np.testing.assert_allclose(whole, sims[:, 5], rtol=1e-6)


def test_memory_is_bounded_by_the_sample_not_the_number_of_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration, "SAMPLE", 512)
    monkeypatch.setattr(calibration, "_BLOCK_BUDGET", 512 * 1024)  # sample × 1024 rows at a time, at both sizes
    peaks = []
    for n in (4_096, 16_384):
        vectors, _ = topics(n, n // 40, 32, spread=0.7, seed=5)
        tracemalloc.start()
        try:
            calibrate_vectors(vectors)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # 4× the keywords: only the centred copy of the input grows (n × 32 floats, and its temporaries); no n×n
    # matrix, no n × sample one
    assert peaks[1] - peaks[0] < 3 * (16_384 - 4_096) * 32 * 4, peaks


def test_tiny_sites() -> None:
    assert [neighbours_for(n) for n in (2, 8, 9, 40, 81, 88, 10_000)] == [1, 1, 1, 4, 10, 10, 10]
    a, b = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    # two topics of four distinct keywords (a keyword's nearest neighbour is another keyword of its topic)
    vectors = normalise(
        np.vstack([a + e * b for e in (0.1, 0.12, 0.14, 0.16)] + [b + e * a for e in (0.1, 0.11, 0.13, 0.15)])
    )
    labels, clusters, result = calibrated_pass(vectors)
    assert clusters == 2 and labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # Centred, the topics sit at cosine ~-1 from each other and ~1 within: every threshold in between gives
    # this clustering. The middle is chosen, not the edge just above -1 (where a keyword of a third topic
    # arriving later would join one of these).
    assert -0.2 < result.threshold < 0.2, result


def test_space_statistics_and_the_decision() -> None:
    stats = SpaceStats(dim=4)
    assert not stats.due() and decide(stats, None).source == "fallback"
    assert decide(stats, None).threshold == FALLBACK_THRESHOLD and decide(stats, None).mean is None
    stats.add(np.ones((MIN_KEYWORDS, 4), np.float32))
    assert stats.due() and stats.count == MIN_KEYWORDS
    np.testing.assert_allclose(stats.mean(), np.ones(4))
    stats.calibrated(calibrate_vectors(np.eye(4, dtype=np.float32)[np.arange(MIN_KEYWORDS) % 4]))
    assert not stats.due()
    stats.add(np.zeros((MIN_KEYWORDS - 1, 4), np.float32))
    assert not stats.due()  # recalibrates when the space has doubled
    stats.add(np.zeros((1, 4), np.float32))
    assert stats.due()
    decision = decide(stats, None)
    assert decision.source == "calibrated" and decision.mean is not None
    assert decide(stats, 0.7).source == "override" and decide(stats, 0.7).threshold == 0.7
    # the view: centred on the space's mean, unit length
    v = decision.view(np.eye(4, dtype=np.float32))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-6)
