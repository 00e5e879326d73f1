"""SQL of the clusterer: it owns clusters, keyword embeddings, keywords' cluster assignment and the sites'
clustering spaces (per embedding model: vector sum and count, calibrated threshold)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Select, and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.clusterer.calibration import SpaceStats
from services.clusterer.clustering import Vectors
from shared.contracts import utcnow
from shared.db.models import Cluster, ClusteringSpace, Keyword, KeywordEmbedding


@dataclass
class KeywordRow:
    id: int
    keyword: str
    volume: int


@dataclass
class ClusterRow:
    id: int
    name: str
    name_norm: str
    size: int
    centroid: Vectors  # raw member mean (empty when no member has a vector in the model's space)
    embedding_model: str | None = None


def to_bytes(v: Vectors) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def from_bytes(b: bytes) -> Vectors:
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


async def load_keywords(session: AsyncSession, site_id: str, ids: list[int]) -> tuple[list[KeywordRow], set[int]]:
    """Unclustered keywords among `ids`, and the ids that are already clustered (done earlier)."""
    rows = (
        await session.execute(
            select(Keyword.id, Keyword.keyword, Keyword.volume, Keyword.cluster_id).where(
                Keyword.site_id == site_id, Keyword.id.in_(ids)
            )
        )
    ).all()
    pending = [KeywordRow(r.id, r.keyword, r.volume or 0) for r in rows if r.cluster_id is None]
    done = {r.id for r in rows if r.cluster_id is not None}
    return pending, done


def in_space(model: str, dim: int | None) -> ColumnElement[bool]:
    """Embedding rows of this model (and dimension, when known)."""
    same_model = KeywordEmbedding.model == model
    return same_model if dim is None else and_(same_model, KeywordEmbedding.dim == dim)


async def load_embeddings(session: AsyncSession, ids: list[int], model: str, dim: int | None) -> dict[int, Vectors]:
    rows = await session.execute(
        select(KeywordEmbedding.keyword_id, KeywordEmbedding.vector).where(
            KeywordEmbedding.keyword_id.in_(ids), in_space(model, dim)
        )
    )
    return {r.keyword_id: from_bytes(r.vector) for r in rows}


# One statement with four array parameters, whatever the number of vectors: the first pass of a site stores
# a couple of thousand fetched ahead, and a VALUES list of that size is compiled and bound four parameters a
# row. 1,500 vectors of 384 floats on a quiet machine, local PostgreSQL: 85-108 ms that way, 21-26 ms this one.
_SAVE_EMBEDDINGS = text(
    """
    INSERT INTO keyword_embeddings (keyword_id, model, dim, vector)
    SELECT k, :model, d, v FROM unnest(CAST(:ids AS bigint[]), CAST(:dims AS integer[]), CAST(:vectors AS bytea[]))
        AS t(k, d, v)
    ON CONFLICT (keyword_id) DO UPDATE SET model = excluded.model, dim = excluded.dim, vector = excluded.vector
    WHERE keyword_embeddings.model <> excluded.model OR keyword_embeddings.dim <> excluded.dim
    RETURNING keyword_id
    """
)


async def save_embeddings(session: AsyncSession, vectors: dict[int, Vectors], model: str) -> list[int]:
    """Store vectors, replacing a keyword's vector of another model or dimension; returns the ids stored
    (the keywords that newly entered this model's space: a row already in it is left alone)."""
    if not vectors:
        return []
    params = {
        "model": model,
        "ids": list(vectors),
        "dims": [int(v.shape[0]) for v in vectors.values()],
        "vectors": [to_bytes(v) for v in vectors.values()],
    }
    return [int(k) for k in (await session.scalars(_SAVE_EMBEDDINGS, params)).all()]


async def load_clusters(session: AsyncSession, site_id: str) -> list[ClusterRow]:
    rows = await session.execute(
        select(Cluster.id, Cluster.name, Cluster.name_norm, Cluster.size, Cluster.centroid, Cluster.embedding_model)
        .where(Cluster.site_id == site_id)
        .order_by(Cluster.id)
    )
    return [ClusterRow(r.id, r.name, r.name_norm, r.size, from_bytes(r.centroid), r.embedding_model) for r in rows]


@dataclass
class NewClusterRow:
    name: str
    name_norm: str
    description: str
    intent: str
    centroid: Vectors


async def insert_clusters(
    session: AsyncSession, site_id: str, run_id: str, rows: list[NewClusterRow], embedding_model: str
) -> dict[str, int]:
    """Insert the clusters in one statement; {name_norm: id} of those inserted. A name the site already has
    is not inserted, nor a name given twice (the first of them is)."""
    if not rows:
        return {}
    params = [
        {
            "site_id": site_id,
            "run_id": run_id,
            "name": r.name,
            "name_norm": r.name_norm,
            "description": r.description,
            "intent": r.intent,
            "centroid": to_bytes(r.centroid),
            "size": 0,
            "embedding_model": embedding_model,
        }
        for r in rows
    ]
    # rows as parameters, not .values(rows): a VALUES list has no cache key and is compiled every time
    stmt = (
        insert(Cluster)
        .on_conflict_do_nothing(constraint="uq_clusters_site_name")
        .returning(Cluster.id, Cluster.name_norm)
    )
    return {r.name_norm: int(r.id) for r in await session.execute(stmt, params)}


async def lock_clusters_by_name(session: AsyncSession, site_id: str, names: list[str]) -> dict[str, int]:
    """{name_norm: id} of the site's clusters with these names, locked in id order."""
    if not names:
        return {}
    rows = await session.execute(
        select(Cluster.id, Cluster.name_norm)
        .where(Cluster.site_id == site_id, Cluster.name_norm.in_(names))
        .order_by(Cluster.id)
        .with_for_update()
    )
    return {r.name_norm: int(r.id) for r in rows}


async def lock_clusters(session: AsyncSession, cluster_ids: list[int]) -> dict[int, ClusterRow]:
    """The clusters, locked in id order (two batches joining the same clusters cannot deadlock)."""
    rows = await session.execute(
        select(Cluster.id, Cluster.name, Cluster.name_norm, Cluster.size, Cluster.centroid)
        .where(Cluster.id.in_(cluster_ids))
        .order_by(Cluster.id)
        .with_for_update()
    )
    return {r.id: ClusterRow(r.id, r.name, r.name_norm, r.size, from_bytes(r.centroid)) for r in rows}


# Same reason as `_SAVE_EMBEDDINGS`: a pass of 60 batches assigns ~1,200 keywords, and a VALUES list of that
# size was compiled anew each time (40 ms of the clusterer's CPU on the run's path).
_ASSIGN_KEYWORDS = text(
    """
    UPDATE keywords SET cluster_id = v.cluster_id, clustered_at = :now
    FROM unnest(CAST(:keyword_ids AS bigint[]), CAST(:cluster_ids AS bigint[])) AS v(keyword_id, cluster_id)
    WHERE keywords.id = v.keyword_id AND keywords.cluster_id IS NULL
    RETURNING keywords.cluster_id
    """
)


async def assign_keywords_to(session: AsyncSession, members: dict[int, list[int]]) -> dict[int, int]:
    """Set the cluster of still-unclustered keywords, {cluster id: keyword ids} in one statement; returns how
    many each cluster got."""
    pairs = [(k, c) for c, ids in members.items() for k in ids]
    if not pairs:
        return {}
    result = await session.scalars(
        _ASSIGN_KEYWORDS,
        {"now": utcnow(), "keyword_ids": [k for k, _ in pairs], "cluster_ids": [c for _, c in pairs]},
    )
    added: dict[int, int] = {}
    for cluster_id in result:
        added[int(cluster_id)] = added.get(int(cluster_id), 0) + 1
    return added


async def update_clusters(session: AsyncSession, changes: dict[int, tuple[Vectors, int]]) -> None:
    """New centroid and size per cluster id, in one round trip (executemany)."""
    if changes:
        await session.execute(
            update(Cluster),
            [{"id": c, "centroid": to_bytes(centroid), "size": size} for c, (centroid, size) in changes.items()],
        )


def _outside_space(model: str, dim: int | None) -> ColumnElement[bool]:
    return (
        ~select(KeywordEmbedding.keyword_id)
        .where(KeywordEmbedding.keyword_id == Keyword.id, in_space(model, dim))
        .exists()
    )


async def pending_without_embedding(
    session: AsyncSession, site_id: str, model: str, dim: int | None, exclude: list[int], limit: int
) -> list[KeywordRow]:
    """The site's next unclustered keywords without a vector in this space yet (prefetch candidates)."""
    if limit <= 0:
        return []
    rows = await session.execute(
        select(Keyword.id, Keyword.keyword, Keyword.volume)
        .where(
            Keyword.site_id == site_id,
            Keyword.cluster_id.is_(None),
            Keyword.id.not_in(exclude),
            _outside_space(model, dim),
        )
        .order_by(Keyword.id)
        .limit(limit)
    )
    return [KeywordRow(r.id, r.keyword, r.volume or 0) for r in rows]


async def clustered_without_embedding(
    session: AsyncSession, site_id: str, model: str, dim: int | None, limit: int
) -> list[KeywordRow]:
    """The site's clustered keywords without a vector in this space (to re-embed after a model change)."""
    rows = await session.execute(
        select(Keyword.id, Keyword.keyword, Keyword.volume)
        .where(Keyword.site_id == site_id, Keyword.cluster_id.is_not(None), _outside_space(model, dim))
        .order_by(Keyword.id)
        .limit(limit)
    )
    return [KeywordRow(r.id, r.keyword, r.volume or 0) for r in rows]


# ------------------------------------------------------------------------------------ clustering spaces


async def stored_dim(session: AsyncSession, site_id: str, model: str) -> int | None:
    """The dimension most of the site's stored vectors of this model have (None: none stored)."""
    count = func.count()
    return await session.scalar(
        select(KeywordEmbedding.dim)
        .join(Keyword, Keyword.id == KeywordEmbedding.keyword_id)
        .where(Keyword.site_id == site_id, KeywordEmbedding.model == model)
        .group_by(KeywordEmbedding.dim)
        .order_by(count.desc(), KeywordEmbedding.dim.desc())
        .limit(1)
    )


def _space_vectors(site_id: str, model: str, dim: int) -> Select[int, int | None, bytes]:
    return (
        select(KeywordEmbedding.keyword_id, Keyword.cluster_id, KeywordEmbedding.vector)
        .join(Keyword, Keyword.id == KeywordEmbedding.keyword_id)
        .where(Keyword.site_id == site_id, in_space(model, dim))
    )


async def sample_space(session: AsyncSession, site_id: str, model: str, dim: int, limit: int) -> dict[int, Vectors]:
    """Up to `limit` of the site's vectors in this space, in the fixed pseudo-random order of
    `calibration.sample_key` (so the same keywords are sampled every time)."""
    key = (KeywordEmbedding.keyword_id * 2654435761) % 4294967296
    rows = await session.execute(
        _space_vectors(site_id, model, dim).order_by(key, KeywordEmbedding.keyword_id).limit(limit)
    )
    return {r.keyword_id: from_bytes(r.vector) for r in rows}


async def iter_space(
    session: AsyncSession, site_id: str, model: str, dim: int, page: int = 8192
) -> AsyncIterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Vectors]]:
    """All of the site's vectors in this space, page by page (keyset pagination): keyword ids, cluster ids
    (-1 for unclustered keywords) and the vectors. Memory stays one page however large the site."""
    after = -1
    while True:
        rows = (
            await session.execute(
                _space_vectors(site_id, model, dim)
                .where(KeywordEmbedding.keyword_id > after)
                .order_by(KeywordEmbedding.keyword_id)
                .limit(page)
            )
        ).all()
        if not rows:
            return
        after = rows[-1].keyword_id
        yield (
            np.array([r.keyword_id for r in rows], np.int64),
            np.array([-1 if r.cluster_id is None else r.cluster_id for r in rows], np.int64),
            np.vstack([from_bytes(r.vector) for r in rows]),
        )


async def load_space(session: AsyncSession, site_id: str, model: str) -> SpaceStats | None:
    row = await session.get(ClusteringSpace, (site_id, model))
    return None if row is None else _stats(row)


def _stats(row: ClusteringSpace) -> SpaceStats:
    return SpaceStats(
        dim=row.dim,
        count=row.keyword_count,
        total=np.frombuffer(row.vector_sum, dtype="<f8").astype(np.float64),
        calibrated_count=row.calibrated_count,
        threshold=row.threshold,
    )


async def lock_space(session: AsyncSession, site_id: str, model: str, dim: int) -> SpaceStats:
    """The space row, created empty if missing, locked until the transaction ends: every change to a space
    (new vectors, calibration, rebuild) happens under this lock, so the sum always matches the stored rows."""
    await session.execute(
        insert(ClusteringSpace)
        .values(
            site_id=site_id,
            embedding_model=model,
            dim=dim,
            keyword_count=0,
            vector_sum=np.zeros(dim, "<f8").tobytes(),
            calibrated_count=0,
            calibration={},
        )
        .on_conflict_do_nothing()
    )
    row = await session.scalar(
        select(ClusteringSpace)
        .where(ClusteringSpace.site_id == site_id, ClusteringSpace.embedding_model == model)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return _stats(row)


async def save_space(
    session: AsyncSession, site_id: str, model: str, stats: SpaceStats, calibration: dict[str, float] | None
) -> None:
    values: dict[str, Any] = {
        "dim": stats.dim,
        "keyword_count": stats.count,
        "vector_sum": np.asarray(stats.total, "<f8").tobytes(),
        "threshold": stats.threshold,
        "calibrated_count": stats.calibrated_count,
        "updated_at": utcnow(),
    }
    if calibration is not None:
        values["calibration"] = calibration
    await session.execute(
        update(ClusteringSpace)
        .where(ClusteringSpace.site_id == site_id, ClusteringSpace.embedding_model == model)
        .values(**values)
    )


async def set_centroids(session: AsyncSession, centroids: dict[int, Vectors | None], model: str) -> None:
    """After a rebuild: each cluster's centroid in `model`'s space (None: no member has a vector there)."""
    for cluster_id, centroid in centroids.items():
        await session.execute(
            update(Cluster)
            .where(Cluster.id == cluster_id)
            .values(centroid=b"" if centroid is None else to_bytes(centroid), embedding_model=model)
        )
