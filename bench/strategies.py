"""The ways the bench clusters a labelled list: ours at default settings (calibrated), ours at a fixed
threshold (the site override), and the one-call-per-20-keywords baseline. Each returns one label per row and
the number of clusters (= naming calls)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.clusterer.calibration import (
    SAMPLE,
    WARM_UP,
    Calibration,
    SpaceStats,
    calibrate,
    calibrate_vectors,
    decide,
    neighbour_radii,
    neighbours_for,
    sample_order,
)
from services.clusterer.clustering import Assignment, Vectors, assign, merged_mean, normalise

BASELINE_BATCH = 20  # the "one model call per 20 keywords" approach: a model clusters and names 20 at a time
Labels = npt.NDArray[np.int64]


def labels_of(plan: Assignment, n: int, offset: int = 0) -> tuple[Labels, int]:
    """One label per row (new groups numbered from `offset`; each outlier its own label); groups used."""
    labels = np.full(n, -1, dtype=np.int64)
    for g, rows in enumerate(plan.new_groups):
        labels[rows] = offset + g
    next_label = offset + len(plan.new_groups)
    for row in plan.outliers:
        labels[row] = next_label
        next_label += 1
    return labels, next_label


def one_pass(vectors: Vectors, threshold: float, refine: bool = True) -> tuple[Labels, int]:
    """The whole list in one assign() call (order = the list's order, as volume order), vectors as given."""
    empty = np.zeros((0, vectors.shape[1]), np.float32)
    plan = assign(vectors, empty, threshold, order=list(range(len(vectors))), refine=refine)
    labels, _ = labels_of(plan, len(vectors))
    return labels, len(plan.new_groups)


def calibrated_pass(vectors: Vectors) -> tuple[Labels, int, Calibration]:
    """Ours at default settings over the whole list: centre on its mean, calibrate, one assign() call."""
    result = calibrate_vectors(vectors)
    labels, k = one_pass(normalise(vectors - vectors.mean(axis=0)), result.threshold)
    return labels, k, result


def service_batches(
    vectors: Vectors, override: float | None, batch: int = BASELINE_BATCH, prefetch: int = 512
) -> tuple[Labels, int, list[Calibration]]:
    """Ours as the service runs it: commands of `batch` keywords, each against ALL clusters made before.

    As in services/clusterer/service.py: embeddings are fetched `prefetch` at a time (the first command of a
    site fetches ahead for the next ones, up to `WARM_UP` while the space has no calibration yet), each fetch
    adds to the space's running mean, the space is (re)calibrated whenever its size doubles (sample and
    neighbour radii from what is stored so far), and
    clusters are stored as raw member means, compared in the current view. `override` = the site's fixed
    raw-cosine threshold, None = default settings.
    """
    n, dim = vectors.shape
    stats = SpaceStats(dim=dim)
    stored = 0
    means: list[Vectors] = []
    sizes: list[int] = []
    calibrations: list[Calibration] = []
    labels = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        if rows[-1] >= stored:  # this command's keywords are not embedded yet: one request, with prefetch
            ahead = prefetch if stats.calibrated_count or override is not None else WARM_UP
            fetched = np.arange(stored, min(max(stored + ahead, rows[-1] + 1), n))
            stats.add(vectors[fetched])
            stored = int(fetched[-1]) + 1
            if override is None and stats.due():
                calibrations.append(calibrate_stored(vectors[:stored]))
                stats.calibrated(calibrations[-1])
        decision = decide(stats, override)
        block = vectors[rows]
        centroids = decision.view(np.vstack(means)) if means else np.zeros((0, dim), np.float32)
        plan = assign(decision.view(block), centroids, decision.threshold, order=list(range(len(rows))))
        for idx, members in plan.existing.items():
            labels[rows[members]] = idx
            means[idx] = merged_mean(means[idx], sizes[idx], block[members])
            sizes[idx] += len(members)
        for members in plan.new_groups:
            labels[rows[members]] = len(means)
            means.append(merged_mean(None, 0, block[members]))
            sizes.append(len(members))
    return labels, len(sizes), calibrations


def calibrate_stored(stored: Vectors) -> Calibration:
    """What the service does with the vectors it has stored: a hash-ordered sample, radii over all of them."""
    view = normalise(stored - stored.mean(axis=0))
    pick = np.sort(sample_order(len(stored))[:SAMPLE])
    k = neighbours_for(len(stored))
    return calibrate(view[pick], neighbour_radii(view[pick], [view], k), len(stored), k)


def isolated_batches(vectors: Vectors, threshold: float, batch: int = BASELINE_BATCH) -> tuple[Labels, int]:
    """Baseline: clusters cannot cross batches of `batch` keywords (no shared centroids)."""
    n, dim = vectors.shape
    empty = np.zeros((0, dim), np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    used = 0
    for start in range(0, n, batch):
        block = vectors[start : start + batch]
        plan = assign(block, empty, threshold, order=list(range(len(block))))
        local, used = labels_of(plan, len(block), used)
        labels[start : start + len(block)] = local
    return labels, used


def sweep_thresholds(vectors: Vectors, steps: int = 40, seed: int = 1) -> list[float]:
    """`steps` thresholds evenly spaced between the median and the 99.9 % quantile of the pair cosines of
    `vectors` as given: the range where any useful threshold lies, for any scale."""
    sims = pair_cosines(vectors, seed=seed)
    out: list[float] = np.linspace(np.quantile(sims, 0.5), np.quantile(sims, 0.999), steps).tolist()
    return out


def pair_cosines(vectors: Vectors, pairs: int = 50_000, seed: int = 1) -> npt.NDArray[np.float32]:
    """Cosines of random distinct pairs of rows (fixed seed)."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(vectors), pairs), rng.integers(0, len(vectors), pairs)
    keep = i != j
    out: npt.NDArray[np.float32] = np.einsum("ij,ij->i", vectors[i[keep]], vectors[j[keep]])
    return out


def narrow_band(
    vectors: Vectors, target: float = 0.8, share_below: float = 0.05, seed: int = 7
) -> tuple[Vectors, float]:
    """The same vectors pushed towards one common direction u: normalise(v + a·u), with `a` found by
    bisection so that only `share_below` of the pair cosines stay under `target` (u: a fixed random unit
    vector). Mimics models whose cosines all sit in a narrow high band. Returns the vectors and `a`."""
    u = np.asarray(np.random.default_rng(seed).standard_normal((vectors.shape[1],)), np.float32)
    u /= np.linalg.norm(u)
    lo, hi = 0.0, 64.0
    for _ in range(40):
        a = (lo + hi) / 2
        low = float(np.quantile(pair_cosines(normalise(vectors + a * u)), share_below))
        lo, hi = (a, hi) if low < target else (lo, a)
    return normalise(vectors + hi * u), hi


def calls_per_1000(n: int, clusters: int, embed_batch: int) -> float:
    """Embedding requests (one per `embed_batch` keywords) plus one naming call per new cluster, per 1000."""
    return (math.ceil(n / embed_batch) + clusters) * 1000 / n


def oracle_batches(truth: Sequence[int] | npt.NDArray[np.int64], batch: int = BASELINE_BATCH) -> Labels:
    """A perfect clustering inside each batch of `batch`: the ceiling of any one-call-per-20 method."""
    t = np.asarray(truth, dtype=np.int64)
    out: Labels = (np.arange(len(t)) // batch) * (int(t.max()) + 1) + t
    return out
