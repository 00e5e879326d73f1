"""Incremental centroid clustering over L2-normalised embeddings. Pure numpy, no n×n matrix.

Semantics (the service depends on them):

1. A keyword joins the nearest EXISTING cluster centroid when their cosine similarity reaches the threshold.
2. The rest form new clusters among themselves, leader style: rows are taken in `order` (highest volume
   first), so the head terms become the leaders and the new clusters are named after them.
3. New groups smaller than `min_cluster_size` are outliers.

How it scales. The remaining rows are processed in chunks of `chunk` rows, in `order`:

- one matrix product of the chunk against the centroids of all new clusters formed so far: a row whose
  nearest centroid reaches the threshold joins it (so a keyword of a later chunk lands in a cluster an
  earlier chunk started);
- the rest of the chunk is clustered within the chunk from its chunk×chunk similarity matrix (bounded by
  `chunk`, never n×n): greedy leaders in order, each taking every still-uncovered row within the
  threshold, then every row goes to its most similar leader;
- the chunk's new clusters append their centroids and joined clusters' centroids move to the new mean.

Only the leader loop runs in Python, and it does one vectorised step per new cluster. An optional refinement
pass (`refine=True`) then moves each new-cluster row to its nearest final new-cluster centroid, which undoes
the order effects of the single pass (a row that joined an early cluster before a closer one existed).

Memory is O(n·d + k·d + chunk² + block): the row-versus-centroid similarities are computed in row blocks
sized so a block never holds more than `_SIM_BUDGET` floats, however many clusters there are. Time is
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

# Largest row-block × centroid similarity matrix held at once (floats; 32M float32 = 128 MB).
_SIM_BUDGET = 32 * 1024 * 1024


@dataclass
class Assignment:
    existing: dict[int, list[int]] = field(default_factory=dict)  # existing cluster index -> keyword rows
    new_groups: list[list[int]] = field(default_factory=list)  # keyword rows per new cluster
    outliers: list[int] = field(default_factory=list)


def _normalise(v: Vectors) -> Vectors:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    out: Vectors = (v / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def _nearest(rows: Vectors, centroids: Vectors) -> tuple[_Rows, npt.NDArray[np.float32]]:
    """Index and cosine of the nearest centroid for each row, in row blocks bounded by `_SIM_BUDGET`."""
    m, k = rows.shape[0], centroids.shape[0]
    best = np.zeros(m, dtype=np.intp)
    best_sim = np.full(m, -np.inf, dtype=np.float32)
    if not (m and k):
        return best, best_sim
    block = max(1, min(m, _SIM_BUDGET // k))
    for start in range(0, m, block):
        sims = rows[start : start + block] @ centroids.T
        idx = sims.argmax(axis=1)
        best[start : start + block] = idx
        best_sim[start : start + block] = np.take_along_axis(sims, idx[:, None], axis=1)[:, 0]
    return best, best_sim


def _leaders(sims: npt.NDArray[np.float32], threshold: float) -> tuple[_Rows, _Rows]:
    """Greedy leader clustering of a chunk from its similarity matrix.

    Rows are in priority order: the first row not yet within the threshold of a leader becomes a leader and
    covers every row within the threshold of it. Then each row goes to its MOST similar leader (not the first
    one that covered it), so groups do not depend on which leader happened to come first. Returns the leader
    positions and, per row, the index (into the leaders) of its group.
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
    group = np.take(sims, lead, axis=1).argmax(axis=1)  # np.take: far faster than sims[:, lead] here
    group[lead] = np.arange(lead.size)  # a leader always heads its own group
    return lead, group


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
        self._unit[touched] = _normalise(self._sums[touched])

    def append(self, sums: Vectors) -> None:
        need = self.k + sums.shape[0]
        if need > self._sums.shape[0]:
            cap = max(need, 2 * self._sums.shape[0])
            self._sums = np.resize(self._sums, (cap, self._sums.shape[1]))
            self._unit = np.resize(self._unit, (cap, self._unit.shape[1]))
        self._sums[self.k : need] = sums
        self._unit[self.k : need] = _normalise(sums)
        self.k = need


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
    progress: Progress | None = None,
    refine: bool = True,
) -> Assignment:
    """Assign rows of `vectors` to existing `centroids` or to new groups (see module doc).

    `progress(done, total)` is called after every chunk with the number of rows settled so far and `n`.
    """
    n = vectors.shape[0]
    chunk = max(1, chunk)
    result = Assignment()
    report = progress if progress is not None else (lambda _done, _total: None)
    if not n:
        report(0, 0)
        return result

    # 1. Existing clusters first: a keyword that fits one must not start a near-duplicate cluster.
    unassigned = np.ones(n, dtype=bool)
    joined = 0
    if centroids.shape[0]:
        for start in range(0, n, chunk):
            best, best_sim = _nearest(vectors[start : start + chunk], centroids)
            hits = np.nonzero(best_sim >= threshold)[0]
            for offset in hits:
                result.existing.setdefault(int(best[offset]), []).append(start + int(offset))
            unassigned[start + hits] = False
            joined += hits.size
            report(joined, n)

    # 2. New clusters among the rest, chunk by chunk in priority order.
    pending = np.asarray(order if order is not None else range(n), dtype=np.intp)
    rows = pending[unassigned[pending]]
    label = np.full(rows.size, -1, dtype=np.intp)  # new-cluster index per position in `rows`
    book = _Centroids(vectors.shape[1])
    for start in range(0, rows.size, chunk):
        pos = np.arange(start, min(start + chunk, rows.size))
        block = vectors[rows[pos]]
        best, best_sim = _nearest(block, book.unit)
        fits = best_sim >= threshold
        label[pos[fits]] = best[fits]
        book.add_to(best[fits], block[fits])

        rest = ~fits
        if rest.any():
            fresh = block[rest]
            lead, group = _leaders(fresh @ fresh.T, threshold)
            label[pos[rest]] = book.k + group
            book.append(_group_sums(fresh, group)[1])  # every leader heads its group: groups are 0..len(lead)-1
        report(joined + int(pos[-1]) + 1, n)

    # 3. Optional refinement: every new-cluster row to its nearest final centroid. Rows only ever move
    # between new clusters (never to an existing one or to nowhere), so the semantics above still hold.
    if refine and book.k > 1:
        final = book.unit
        for start in range(0, rows.size, chunk):
            stop = min(start + chunk, rows.size)
            best, _ = _nearest(vectors[rows[start:stop]], final)
            label[start:stop] = best

    # Groups in order of their first (highest-priority) member, members in priority order.
    members: dict[int, list[int]] = {}
    for row, g in zip(rows.tolist(), label.tolist(), strict=True):
        members.setdefault(g, []).append(row)
    for group_rows in members.values():
        if len(group_rows) >= min_cluster_size:
            result.new_groups.append(group_rows)
        else:
            result.outliers.extend(group_rows)
    report(n, n)
    return result


def merged_centroid(old: Vectors | None, old_size: int, members: Vectors) -> Vectors:
    """Centroid after adding `members` to a cluster of `old_size` whose centroid is `old`."""
    total = members.sum(axis=0)
    if old is not None and old_size:
        total = total + old * old_size
    return _normalise(total)
