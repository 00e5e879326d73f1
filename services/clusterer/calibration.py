"""The similarity decision, calibrated from the site's own keywords: no threshold to tune, any embedding model.

Why. Embedding models put cosines on different scales: all-MiniLM-L6-v2 spreads unrelated keywords around 0,
a multilingual model squeezes everything into 0.8-0.97 (the "narrow band"), so any fixed cosine threshold is
right for one model and collapses another into one cluster. Two steps remove the scale:

1. Centring. Vectors are compared after subtracting the site's mean vector (per embedding model, kept up to
   date as keywords are embedded, persisted in `clustering_spaces`), then re-normalised. The component that
   every keyword shares - the narrow band's common direction - cancels, and cosines spread around 0 again.
   Cluster centroids are stored as raw member means, so they are centred the same way whenever the mean
   moves: old clusters and new keywords always meet in one space.
2. A threshold chosen by the data. A sample of the site's keywords (up to `SAMPLE`) is clustered by the very
   algorithm the service runs (`clustering.assign`) at a ladder of candidate thresholds (quantiles of the
   sample's pair similarities). Each candidate is scored by how well its clusters reproduce the site's
   nearest-neighbour relation: a pair of keywords "belongs together" when one is among the other's
   `NEIGHBOURS` most similar keywords of the whole site. Recall = share of those pairs a clustering keeps
   together; precision = share of its same-cluster pairs that are such pairs; the score is F-beta with
   beta = `RECALL_WEIGHT` (recall weighs beta² = 9 times: a topic larger than 11 keywords necessarily holds
   pairs that are not each other's 10 nearest, so precision is low even for a right cluster). The best
   candidate is the site's threshold. Only ranks (who is whose neighbour) and counts enter the score, so
   it is invariant to any monotone rescaling of the similarities; that is what "scale-free" means here.

Neighbours are counted in the whole site, not in the sample: each sampled keyword's radius is its
similarity to its `NEIGHBOURS`-th nearest keyword among all of them, and a sampled pair belongs together when
it lies within either radius. Both pair counts then shrink by the same factor with the sample, so precision
and recall estimate the whole site's; with neighbours counted inside the sample instead, a sample of 512 of
4,500 keywords picked thresholds far too low (bench/README.md).

Chosen by the numbers (bench/README.md, "Choosing the rule"): a fixed quantile of the pair similarities or a
z-score cut cannot serve both the IAB taxonomy (broad categories: best at the 0.88 quantile) and the intent
sets (best near 0.99); modularity of the kNN graph came within 85-90 % of the best fixed threshold everywhere;
this F-beta score within 91 % on every data set, embedder and narrow-band variant.

Below `MIN_KEYWORDS` keywords in the space there is no distribution to learn from: the raw cosine
`FALLBACK_THRESHOLD` (the former default) decides until the site has that many. Recalibration happens each
time the number of keywords in the space doubles. Everything here is deterministic numpy; the memory is
O(SAMPLE² + SAMPLE·chunk), never n×n. The service runs it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.clusterer.clustering import Vectors, cluster_labels, normalise

NEIGHBOURS = 10
RECALL_WEIGHT = 3.0
SAMPLE = 2048
MIN_KEYWORDS = 8
# Keywords to embed ahead while a space has no calibration yet (instead of one request's worth): the first
# calibration then sees up to this many of the site's keywords rather than the first 512.
WARM_UP = SAMPLE
FALLBACK_THRESHOLD = 0.5
# Candidate thresholds: pair-similarity quantiles 1 - g for g from 0.5 down to 0.001, denser at the top
# (where fine-grained topics are decided): 48 clusterings of the sample.
_LADDER = 1.0 - np.geomspace(0.5, 0.001, 48)
# Largest sample × vectors similarity block held at once (floats).
_BLOCK_BUDGET = 4 * 1024 * 1024

Floats = npt.NDArray[np.float64]


@dataclass
class Calibration:
    threshold: float
    keywords: int  # keywords in the space when calibrated
    sample: int
    neighbours: int
    quantile: float  # the chosen threshold's place among the sample's pair similarities
    f_score: float
    precision: float
    recall: float
    sample_clusters: int

    def figures(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


@dataclass
class SpaceStats:
    """Running sum and count of a site's raw keyword vectors in one embedding space, and its calibration."""

    dim: int
    count: int = 0
    total: Floats = field(default_factory=lambda: np.zeros(0))
    calibrated_count: int = 0
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.total.size == 0:
            self.total = np.zeros(self.dim, np.float64)

    def mean(self) -> Vectors:
        return (self.total / max(self.count, 1)).astype(np.float32)

    def add(self, vectors: Vectors) -> None:
        if len(vectors):
            self.count += len(vectors)
            self.total = self.total + vectors.astype(np.float64).sum(axis=0)

    def due(self) -> bool:
        """Calibrate when there is enough to learn from and the space has doubled since the last time."""
        return self.count >= MIN_KEYWORDS and self.count >= 2 * self.calibrated_count

    def calibrated(self, result: Calibration) -> None:
        self.threshold = result.threshold
        self.calibrated_count = result.keywords


@dataclass(frozen=True)
class Decision:
    """How this batch compares keywords: the view of the vectors (centred or raw) and the threshold."""

    threshold: float
    mean: Vectors | None  # None: raw cosine (site override, or too few keywords to calibrate)
    source: str  # "calibrated" | "override" | "fallback"

    def view(self, vectors: Vectors) -> Vectors:
        if not len(vectors):
            return vectors.astype(np.float32)
        return normalise(vectors - self.mean if self.mean is not None else vectors)


def decide(stats: SpaceStats | None, override: float | None) -> Decision:
    if override is not None:
        return Decision(override, None, "override")
    if stats is None or stats.threshold is None or stats.count < MIN_KEYWORDS:
        return Decision(FALLBACK_THRESHOLD, None, "fallback")
    return Decision(stats.threshold, stats.mean(), "calibrated")


def neighbours_for(n: int) -> int:
    """`NEIGHBOURS`, fewer for tiny sites so that neighbours stay a small share of all keywords."""
    return max(1, min(NEIGHBOURS, (n - 1) // 8))


class Radii:
    """Each sample row's similarity to its k-th most similar row of the space, fed chunk by chunk (the
    service streams the space from the database). The chunks must include the sample's own rows: the top
    k+1 then holds the row itself (similarity 1), so the (k+1)-th is the k-th other."""

    def __init__(self, sample: Vectors, k: int) -> None:
        self.sample, self.k = sample, k
        self._top = np.full((sample.shape[0], 0), -np.inf, np.float32)

    def add(self, chunk: Vectors) -> None:
        step = max(1, _BLOCK_BUDGET // max(self.sample.shape[0], 1))
        for start in range(0, chunk.shape[0], step):
            both = np.concatenate([self._top, self.sample @ chunk[start : start + step].T], axis=1)
            keep = min(self.k + 1, both.shape[1])
            self._top = -np.partition(-both, keep - 1, axis=1)[:, :keep]

    def result(self) -> npt.NDArray[np.float32]:
        if self._top.shape[1] < self.k + 1:  # fewer rows than neighbours: every pair is a neighbour pair
            return np.full(self.sample.shape[0], -np.inf, np.float32)
        radii: npt.NDArray[np.float32] = np.sort(self._top, axis=1)[:, -(self.k + 1)]
        return radii


def neighbour_radii(sample: Vectors, everything: Iterable[Vectors], k: int) -> npt.NDArray[np.float32]:
    radii = Radii(sample, k)
    for chunk in everything:
        radii.add(chunk)
    return radii.result()


def calibrate(
    sample: Vectors,
    radii: npt.NDArray[np.float32],
    keywords: int,
    k: int,
    trace: list[tuple[float, float]] | None = None,
) -> Calibration:
    """The threshold whose clustering of `sample` (centred, normalised rows) best keeps neighbours together.

    `radii[i]` is row i's similarity to its k-th nearest keyword of the whole space (`neighbour_radii`).
    """
    m = sample.shape[0]
    sims = sample @ sample.T
    upper = tuple(i.astype(np.int32) for i in np.triu_indices(m, 1))
    pair_sims = sims[upper]
    together = pair_sims >= np.minimum(radii[upper[0]], radii[upper[1]])
    left, right = upper[0][together], upper[1][together]
    n_pairs = max(int(together.sum()), 1)
    del sims
    candidates = np.unique(np.quantile(pair_sims, _LADDER)) if pair_sims.size else np.array([1.0])
    b2 = RECALL_WEIGHT**2

    def score(threshold: float) -> Calibration:
        lab = cluster_labels(sample, threshold)  # what `assign` would form, as labels
        sizes = np.bincount(lab)  # a cluster that refinement emptied counts 0
        co_members = int((sizes * (sizes - 1) // 2).sum())
        inside = int((lab[left] == lab[right]).sum())
        precision = inside / co_members if co_members else 1.0
        recall = inside / n_pairs
        f = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
        if trace is not None:
            trace.append((threshold, f))
        return Calibration(
            threshold=float(threshold),
            keywords=keywords,
            sample=m,
            neighbours=k,
            quantile=-1.0,  # filled in for the chosen one only (`placed`): a pass over every pair
            f_score=f,
            precision=precision,
            recall=recall,
            sample_clusters=int(np.count_nonzero(sizes)),
        )

    def placed(chosen: Calibration) -> Calibration:
        chosen.quantile = float((pair_sims < chosen.threshold).mean()) if pair_sims.size else 1.0
        return chosen

    scored = [score(t) for t in candidates.tolist()]
    # The best candidate. When the candidates next to it score exactly the same (the same clustering of the
    # sample: typical of small sites with well separated topics), the lowest of them sits just above the
    # similarity of the two closest topics, where a keyword that arrives later would join the wrong one. The
    # clustering holds from there up to the next candidate: take the middle of that range, the widest margin
    # to both sides (when it still scores the same; else the middle candidate of the run).
    top = max(c.f_score for c in scored)
    first = next(i for i, c in enumerate(scored) if c.f_score == top)
    last = first
    while last + 1 < len(scored) and scored[last + 1].f_score == top:
        last += 1
    if last + 1 < len(scored):
        middle = score((scored[first].threshold + scored[last + 1].threshold) / 2)
        if middle.f_score == top:
            return placed(middle)
    return placed(scored[(first + last) // 2])


def calibrate_vectors(
    vectors: Vectors, mean: Vectors | None = None, trace: list[tuple[float, float]] | None = None
) -> Calibration:
    """Calibrate from all of a space's raw vectors at once (the bench, tests): sample = the first `SAMPLE`
    rows in a fixed pseudo-random order, neighbours counted among all rows."""
    n = vectors.shape[0]
    centre = vectors.mean(axis=0) if mean is None else mean
    view = normalise(vectors - centre)
    pick = np.sort(sample_order(n)[:SAMPLE])
    k = neighbours_for(n)
    radii = neighbour_radii(view[pick], [view], k)
    return calibrate(view[pick], radii, n, k, trace)


def sample_key(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Knuth's multiplicative hash of ids: sorting by it gives a fixed pseudo-random order, so the same
    keywords are sampled every time (the service's SQL orders keyword ids by the same expression)."""
    out: npt.NDArray[np.int64] = (ids.astype(np.int64) * 2654435761) % 4294967296
    return out


def sample_order(n: int) -> npt.NDArray[np.intp]:
    """Rows 0..n-1 in the sampling order."""
    return np.argsort(sample_key(np.arange(n, dtype=np.int64)), kind="stable").astype(np.intp)
