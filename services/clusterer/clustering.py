"""Incremental centroid clustering over L2-normalised embeddings. Pure numpy, no n×n matrix.

A keyword joins the nearest existing cluster when its cosine similarity to the centroid reaches the
threshold; otherwise it is compared with the clusters formed so far in this pass (leader clustering,
highest-volume keyword first so leaders are the head terms), and starts a new one if none is close.
Memory is O(n·d + k·d); time O(n·k·d) in chunks. Runs in a thread: it is CPU work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass
class Assignment:
    existing: dict[int, list[int]] = field(default_factory=dict)  # existing cluster index -> keyword rows
    new_groups: list[list[int]] = field(default_factory=list)  # keyword rows per new cluster
    outliers: list[int] = field(default_factory=list)


def _normalise(v: Vectors) -> Vectors:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    out: Vectors = (v / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def assign(
    vectors: Vectors,
    centroids: Vectors,
    threshold: float,
    min_cluster_size: int = 1,
    order: list[int] | None = None,
    chunk: int = 4096,
) -> Assignment:
    """Assign rows of `vectors` to existing `centroids` or to new groups (see module doc)."""
    n = vectors.shape[0]
    result = Assignment()
    unassigned = np.ones(n, dtype=bool)
    if centroids.shape[0] and n:
        for start in range(0, n, chunk):
            sims = vectors[start : start + chunk] @ centroids.T
            best = sims.argmax(axis=1)
            best_sim = sims[np.arange(sims.shape[0]), best]
            for offset in np.nonzero(best_sim >= threshold)[0]:
                row = start + int(offset)
                result.existing.setdefault(int(best[offset]), []).append(row)
                unassigned[row] = False

    rows = [r for r in (order if order is not None else range(n)) if unassigned[r]]
    dim = vectors.shape[1] if n else 0
    sums = np.zeros((max(16, len(rows)), dim), dtype=np.float32)  # running member sums of new groups
    normed = np.zeros_like(sums)
    groups: list[list[int]] = []
    for row in rows:
        v = vectors[row]
        k = len(groups)
        if k:
            sims = normed[:k] @ v
            j = int(sims.argmax())
            if sims[j] >= threshold:
                groups[j].append(row)
                sums[j] += v
                normed[j] = _normalise(sums[j])
                continue
        groups.append([row])
        sums[k] = v
        normed[k] = v
    for members in groups:
        if len(members) >= min_cluster_size:
            result.new_groups.append(members)
        else:
            result.outliers.extend(members)
    return result


def merged_centroid(old: Vectors | None, old_size: int, members: Vectors) -> Vectors:
    """Centroid after adding `members` to a cluster of `old_size` whose centroid is `old`."""
    total = members.sum(axis=0)
    if old is not None and old_size:
        total = total + old * old_size
    return _normalise(total)
