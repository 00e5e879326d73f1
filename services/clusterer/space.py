"""A site's clustering space for the configured embedding model: rebuilding it after a model change, and
calibrating its threshold from the stored vectors (the numbers: services/clusterer/calibration.py).

One space per site and model (`clustering_spaces`). Clusters remember which model their centroid averages.
When a site's clusters were made with another model (or before spaces existed), vectors of two models must
never meet: `rebuild` re-embeds the site's clustered keywords with the current model, then recomputes the
space's sum and every cluster's centroid from the stored vectors, under the space's row lock.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clusterer import repository as repo
from services.clusterer.calibration import (
    SAMPLE,
    Calibration,
    Radii,
    SpaceStats,
    calibrate,
    neighbours_for,
    sample_key,
)
from services.clusterer.clustering import Vectors, normalise
from shared.ai import AiClient, AiError, Usage

log = logging.getLogger(__name__)

# Keywords re-embedded per round of a rebuild: each round's vectors are stored in their own transaction,
# so a rebuild cut short (crash, outage) resumes where it stopped instead of paying for them again.
REBUILD_CHUNK = 4096


class Spaces:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ai: AiClient, model: str) -> None:
        self._sessions = sessions
        self._ai = ai
        self._model = model

    async def rebuild(self, site_id: str, dim: int | None, usage: Usage, fresh: dict[int, Vectors]) -> int | None:
        """Bring the site's clusters into the current model's space; returns the space's dimension (None when
        the site has nothing to rebuild from). `fresh` = vectors this batch already fetched (stored first)."""
        if fresh:
            dim = _dim_of(fresh, dim)
            async with self._sessions.begin() as session:
                await repo.save_embeddings(session, fresh, self._model)
        elif dim is None:  # e.g. the first batch after the upgrade: the model's vectors are already stored
            async with self._sessions() as session:
                dim = await repo.stored_dim(session, site_id, self._model)
        while True:
            async with self._sessions() as session:
                rows = await repo.clustered_without_embedding(session, site_id, self._model, dim, REBUILD_CHUNK)
            if not rows:
                break
            matrix = await self._ai.embed([r.keyword for r in rows], "keyword-embeddings", usage)
            vectors = {r.id: matrix[i] for i, r in enumerate(rows)}
            dim = _dim_of(vectors, dim)
            async with self._sessions.begin() as session:
                if not await repo.save_embeddings(session, vectors, self._model):
                    break  # nothing stored (cannot happen unless rows vanished): do not loop forever
            log.info("site %s: re-embedded %d clustered keywords with %s", site_id, len(rows), self._model)
        if dim is None:
            return None
        async with self._sessions.begin() as session:
            stats = await repo.lock_space(session, site_id, self._model, dim)
            fresh_stats = SpaceStats(dim=dim)
            sums: dict[int, npt.NDArray[np.float64]] = {}
            counts: dict[int, int] = {}
            async for _, cluster_ids, matrix in repo.iter_space(session, site_id, self._model, dim):
                fresh_stats.add(matrix)
                for cluster_id in np.unique(cluster_ids[cluster_ids >= 0]).tolist():
                    members = matrix[cluster_ids == cluster_id].astype(np.float64)
                    sums[cluster_id] = sums.get(cluster_id, np.zeros(dim)) + members.sum(axis=0)
                    counts[cluster_id] = counts.get(cluster_id, 0) + len(members)
            clusters = await repo.load_clusters(session, site_id)
            centroids: dict[int, Vectors | None] = {
                c.id: (sums[c.id] / counts[c.id]).astype(np.float32) if c.id in counts else None for c in clusters
            }
            await repo.set_centroids(session, centroids, self._model)
            # A new space calibrates afresh (calibrated_count 0): the old model's threshold means nothing here.
            await repo.save_space(session, site_id, self._model, fresh_stats, {})
            log.info(
                "site %s: clustering space %s/%dd rebuilt: %d keywords, %d clusters (was %d keywords)",
                site_id,
                self._model,
                dim,
                fresh_stats.count,
                len(clusters),
                stats.count,
            )
        return dim

    async def calibrate(self, site_id: str, stats: SpaceStats, fresh: dict[int, Vectors]) -> Calibration:
        """Calibrate the site's threshold from a sample of its vectors (stored + this batch's `fresh`, which
        `stats` already counts), with neighbours counted among all of them. CPU work runs in a thread."""
        mean = stats.mean()
        async with self._sessions() as session:
            stored = await repo.sample_space(session, site_id, self._model, stats.dim, SAMPLE)
        candidates = stored | fresh
        ids = np.array(sorted(candidates), np.int64)
        picked = ids[np.argsort(sample_key(ids), kind="stable")[:SAMPLE]]
        sample = normalise(np.vstack([candidates[int(i)] for i in np.sort(picked)]) - mean)
        k = neighbours_for(stats.count)
        radii = Radii(sample, k)
        async with self._sessions() as session:
            async for keyword_ids, _, matrix in repo.iter_space(session, site_id, self._model, stats.dim):
                mine = ~np.isin(keyword_ids, list(fresh))  # a fresh vector stored meanwhile counts once
                await asyncio.to_thread(radii.add, normalise(matrix[mine] - mean))
        if fresh:
            await asyncio.to_thread(radii.add, normalise(np.vstack(list(fresh.values())) - mean))
        result = await asyncio.to_thread(calibrate, sample, radii.result(), stats.count, k)
        log.info(
            "site %s: calibrated %s on %d keywords (sample %d, %d neighbours): threshold %.3f at the %.4f quantile",
            site_id,
            self._model,
            stats.count,
            result.sample,
            k,
            result.threshold,
            result.quantile,
        )
        return result


def _dim_of(vectors: dict[int, Vectors], expected: int | None) -> int:
    dims = {int(v.shape[0]) for v in vectors.values()}
    if len(dims) != 1 or (expected is not None and dims != {expected}):
        raise AiError(f"the embedding model returned vectors of {sorted(dims)} dimensions, expected {expected}", False)
    return dims.pop()
