"""Incremental centroid clustering over L2-normalised embeddings. Pure numpy, no n×n matrix.

Semantics (the service depends on them):

1. A keyword joins the nearest EXISTING cluster centroid when their cosine similarity reaches the threshold.
2. The rest form new clusters among themselves, leader style, taken in `order` (highest volume first): the
   head terms lead, and every group lists its members in that order (the service names a group from its
   first keywords).
3. New groups smaller than `min_cluster_size` are outliers.

How it scales. The rows left after step 1 are processed in blocks of `block` rows, in `order`:

- one matrix product of the block against the centroids of all new clusters formed so far: a row whose
  nearest centroid reaches the threshold joins it (so a keyword of a later block lands in a cluster an
  earlier block started);
- the rest of the block is clustered within the block from its block×block similarity matrix (bounded,
  never n×n): greedy leaders in order, each covering every row within the threshold of it, then every row
  goes to its most similar leader;
- the block's new clusters append their centroids; joined clusters' centroids move to the new mean.

Only the leader loop runs in Python, one vectorised step per new cluster. Smaller blocks compare more rows
with centroids (means) rather than with single leaders, which measured better on labelled data
(bench/README.md); 512 keeps the per-block overhead negligible.

Refinement (`refine=True`, the default): one more pass moves each row of a multi-member new cluster to its
nearest final multi-member centroid, and lets a singleton join one that has moved within the threshold. It
undoes order effects of the single pass (a row that joined an early cluster before a closer one existed),
raised the adjusted Rand index on both benchmark data sets at every threshold and cut the number of clusters
(so naming calls) by up to a sixth, for one more product against the multi-member centroids.

Memory is O(n·d + k·d + block² + _SIM_BUDGET): row-versus-centroid similarities are computed in row slices
sized so a slice never holds more than `_SIM_BUDGET` floats, however many clusters there are. Time is
O(n·k·d) in BLAS. Deterministic: no randomness, ties go to the lowest index. Runs in a thread: CPU work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Progress = Callable[[int, int], None]
_Rows = npt.NDArray[np.intp]

# Largest rows × centroids similarity matrix held at once (floats; 32M float32 = 128 MB).
_SIM_BUDGET = 32 * 1024 * 1024


@dataclass
class Assignment:
    existing: dict[int, list[int]] = field(default_factory=dict)  # existing cluster index -> keyword rows
    new_groups: list[list[int]] = field(default_factory=list)  # keyword rows per new cluster
    outliers: list[int] = field(default_factory=list)


def normalise(v: Vectors) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    out: Vectors = (v / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def _nearest(rows: Vectors, centroids: Vectors) -> tuple[_Rows, npt.NDArray[np.float32]]:
    """Index and cosine of the nearest centroid for each row, in row slices bounded by `_SIM_BUDGET`."""
    m, k = rows.shape[0], centroids.shape[0]
    best = np.zeros(m, dtype=np.intp)
    best_sim = np.full(m, -np.inf, dtype=np.float32)
    if not (m and k):
        return best, best_sim
    step = max(1, min(m, _SIM_BUDGET // k))
    for start in range(0, m, step):
        sims = rows[start : start + step] @ centroids.T
        idx = sims.argmax(axis=1)
        best[start : start + step] = idx
        best_sim[start : start + step] = np.take_along_axis(sims, idx[:, None], axis=1)[:, 0]
    return best, best_sim


def _leaders(sims: npt.NDArray[np.float32], threshold: float) -> _Rows:
    """Greedy leader clustering of a block of rows from its similarity matrix.

    Rows are in priority order: the first row not yet within the threshold of a leader becomes a leader and
    covers every row within the threshold of it. Then each row goes to its MOST similar leader (not the first
    one that covered it), so groups do not depend on which leader happened to come first. Returns, per row,
    its group: the rank of its leader, so groups are numbered 0..leaders-1 and every one is non-empty.
    """
    m = sims.shape[0]
    close = sims >= threshold
    covered = np.zeros(m, dtype=bool)
    leaders: list[int] = []
    for i in range(m):  # Python steps, but only leaders do work: one vectorised OR per new cluster
        if covered[i]:
            continue
        leaders.append(i)
        np.logical_or(covered, close[i], out=covered)
        covered[i] = True  # a row is its own leader even if rounding put its self-similarity below 1
    lead = np.asarray(leaders, dtype=np.intp)
    group: _Rows = np.take(sims, lead, axis=1).argmax(axis=1)  # np.take: far faster than sims[:, lead] here
    group[lead] = np.arange(lead.size)  # a leader always heads its own group
    return group


class _Centroids:
    """Running member sums of the new clusters and their normalised centroids, in an amortised growing array."""

    def __init__(self, dim: int) -> None:
        self.k = 0
        self._sums = np.zeros((64, dim), dtype=np.float32)
        self._unit = np.zeros((64, dim), dtype=np.float32)

    @property
    def unit(self) -> Vectors:
        return self._unit[: self.k]

    def add_to(self, groups: _Rows, members: Vectors) -> None:
        """Add member vectors to existing clusters and move those centroids to the new mean."""
        if not groups.size:
            return
        touched, sums = _group_sums(members, groups)
        self._sums[touched] += sums
        self._unit[touched] = normalise(self._sums[touched])

    def append(self, sums: Vectors) -> None:
        need = self.k + sums.shape[0]
        if need > self._sums.shape[0]:
            cap = max(need, 2 * self._sums.shape[0])  # doubling: appends stay amortised O(1) per row
            self._sums, self._unit = _grown(self._sums, self.k, cap), _grown(self._unit, self.k, cap)
        self._sums[self.k : need] = sums
        self._unit[self.k : need] = normalise(sums)
        self.k = need


def _grown(a: Vectors, used: int, rows: int) -> Vectors:
    out = np.zeros((rows, a.shape[1]), dtype=np.float32)
    out[:used] = a[:used]
    return out


def _group_sums(vectors: Vectors, group: _Rows) -> tuple[_Rows, Vectors]:
    """The distinct groups (ascending) and the sum of their member vectors.

    Sort by group, then one `add.reduceat` over the runs: much faster than `np.add.at` for wide rows.
    """
    by_group = np.argsort(group, kind="stable")
    ordered = group[by_group]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sums: Vectors = np.add.reduceat(vectors[by_group], starts, axis=0)
    return ordered[starts], sums


def assign(
    vectors: Vectors,
    centroids: Vectors,
    threshold: float,
    min_cluster_size: int = 1,
    order: Sequence[int] | None = None,
    chunk: int = 4096,
    *,
    block: int = 512,
    refine: bool = True,
    progress: Progress | None = None,
) -> Assignment:
    """Assign rows of `vectors` to existing `centroids` or to new groups (see module doc).

    `chunk` rows go through one product against the existing centroids (step 1) and in the refinement;
    `block` rows form new clusters at a time (step 2). `progress(done, n)` is called after every chunk and
    block; `done` rises to `n` in proportion to the work (rows × the passes over them: step 1 when there are
    existing clusters, step 2, the refinement when on), so it reads as rows done; the last call is `(n, n)`.
    """
    n = vectors.shape[0]
    chunk, block = max(1, chunk), max(1, block)
    result = Assignment()
    has_existing = centroids.shape[0] > 0
    later_passes = 1 + int(refine)  # passes after step 1 that a row joining an existing cluster skips
    total = n * (int(has_existing) + later_passes)  # work in row-passes
    done = 0

    def report(amount: int) -> None:
        nonlocal done
        done += amount
        if progress is not None:
            progress(done * n // total if total else 0, n)

    if not n:
        report(0)
        return result

    # 1. Existing clusters first: a keyword that fits one must not start a near-duplicate cluster.
    unassigned = np.ones(n, dtype=bool)
    if has_existing:
        for start in range(0, n, chunk):
            best, best_sim = _nearest(vectors[start : start + chunk], centroids)
            hits = np.nonzero(best_sim >= threshold)[0]
            for offset in hits:
                result.existing.setdefault(int(best[offset]), []).append(start + int(offset))
            unassigned[start + hits] = False
            report(best.size + hits.size * later_passes)

    # 2. and 3. New clusters among the rest, in priority order.
    pending = np.asarray(order if order is not None else range(n), dtype=np.intp)
    rows = pending[unassigned[pending]]
    label = _new_clusters(vectors, rows, threshold, chunk, block, refine, report)

    # Groups in order of their first (highest-priority) member, members in priority order.
    members: dict[int, list[int]] = {}
    for row, g in zip(rows.tolist(), label.tolist(), strict=True):
        members.setdefault(g, []).append(row)
    for group_rows in members.values():
        if len(group_rows) >= min_cluster_size:
            result.new_groups.append(group_rows)
        else:
            result.outliers.extend(group_rows)
    if done < total:  # rows that `order` left out are dropped (as they always were): close the count
        report(total - done)
    return result


def cluster_labels(vectors: Vectors, threshold: float) -> _Rows:
    """Each row's new cluster (a number; equal numbers = one cluster) when `vectors` are clustered among
    themselves in row order: what `assign` forms with no existing clusters and `min_cluster_size` 1, without
    listing the members (the calibration scores 48 such clusterings and needs only the labels)."""
    return _new_clusters(vectors, np.arange(vectors.shape[0], dtype=np.intp), threshold, 4096, 512, True, None)


def _new_clusters(
    vectors: Vectors,
    rows: _Rows,
    threshold: float,
    chunk: int,
    block: int,
    refine: bool,
    report: Callable[[int], None] | None,
) -> _Rows:
    """Steps 2 and 3 of `assign` for `rows` (in priority order): the new-cluster index of each position."""
    # 2. Block by block in priority order.
    label = np.full(rows.size, -1, dtype=np.intp)  # new-cluster index per position in `rows`
    book = _Centroids(vectors.shape[1])
    for start in range(0, rows.size, block):
        pos = np.arange(start, min(start + block, rows.size))
        batch = vectors[rows[pos]]
        best, best_sim = _nearest(batch, book.unit)
        fits = best_sim >= threshold
        label[pos[fits]] = best[fits]
        book.add_to(best[fits], batch[fits])

        rest = ~fits
        if rest.any():
            fresh = batch[rest]
            group = _leaders(fresh @ fresh.T, threshold)
            label[pos[rest]] = book.k + group
            book.append(_group_sums(fresh, group)[1])  # groups are 0..leaders-1, all non-empty: sums line up
        if report is not None:
            report(pos.size)

    # 3. Refinement: rows of multi-member new clusters move to the nearest final multi-member centroid, and
    # a singleton joins one when it is now within the threshold (the centroid moved towards it after it was
    # seen). Singletons' own centroids are left out on purpose: with a high threshold nearly every row is one,
    # and comparing every row with every singleton would be the n×n product we avoid. Rows only move between
    # new clusters, never to an existing cluster or to nowhere, so the semantics above still hold.
    if refine:
        sizes = np.bincount(label, minlength=book.k)
        multi = np.flatnonzero(sizes > 1)
        candidates = book.unit[multi]
        for start in range(0, rows.size, chunk):
            part = label[start : start + chunk]  # a view: assigning into it updates `label`
            if multi.size:
                best, best_sim = _nearest(vectors[rows[start : start + chunk]], candidates)
                move = (sizes[part] > 1) | (best_sim >= threshold)
                part[move] = multi[best[move]]
            if report is not None:
                report(part.size)
    return label


def merged_centroid(old: Vectors | None, old_size: int, members: Vectors) -> Vectors:
    """Centroid after adding `members` to a cluster of `old_size` whose centroid is `old`."""
    total = members.sum(axis=0)
    if old is not None and old_size:
        total = total + old * old_size
    return normalise(total)


def merged_mean(old: Vectors | None, old_size: int, members: Vectors) -> Vectors:
    """Mean of a cluster's raw member vectors after adding `members` (what the service stores: a mean, not a
    direction, so the cluster can be compared in any view of the space, centred or raw)."""
    total = members.astype(np.float64).sum(axis=0)
    if old is not None and old_size:
        total = total + old.astype(np.float64) * old_size
    out: Vectors = (total / (old_size + members.shape[0])).astype(np.float32)
    return out
