"""SQL of the clusterer: it owns clusters, keyword embeddings and keywords' cluster assignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.clusterer.clustering import Vectors
from shared.contracts import utcnow
from shared.db.models import Cluster, Keyword, KeywordEmbedding


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
    centroid: Vectors


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


async def load_embeddings(session: AsyncSession, ids: list[int], model: str) -> dict[int, Vectors]:
    rows = await session.execute(
        select(KeywordEmbedding.keyword_id, KeywordEmbedding.vector).where(
            KeywordEmbedding.keyword_id.in_(ids), KeywordEmbedding.model == model
        )
    )
    return {r.keyword_id: from_bytes(r.vector) for r in rows}


async def save_embeddings(session: AsyncSession, vectors: dict[int, Vectors], model: str) -> None:
    if not vectors:
        return
    stmt = insert(KeywordEmbedding).values(
        [{"keyword_id": k, "model": model, "dim": int(v.shape[0]), "vector": to_bytes(v)} for k, v in vectors.items()]
    )
    await session.execute(stmt.on_conflict_do_nothing())


async def load_clusters(session: AsyncSession, site_id: str) -> list[ClusterRow]:
    rows = await session.execute(
        select(Cluster.id, Cluster.name, Cluster.name_norm, Cluster.size, Cluster.centroid)
        .where(Cluster.site_id == site_id)
        .order_by(Cluster.id)
    )
    return [ClusterRow(r.id, r.name, r.name_norm, r.size, from_bytes(r.centroid)) for r in rows]


async def insert_cluster(
    session: AsyncSession,
    site_id: str,
    run_id: str,
    name: str,
    name_norm: str,
    description: str,
    intent: str,
    centroid: Vectors,
    size: int,
) -> int | None:
    """The new cluster's id, or None when the site already has one with this normalised name."""
    stmt = (
        insert(Cluster)
        .values(
            site_id=site_id,
            run_id=run_id,
            name=name,
            name_norm=name_norm,
            description=description,
            intent=intent,
            centroid=to_bytes(centroid),
            size=size,
        )
        .on_conflict_do_nothing(constraint="uq_clusters_site_name")
        .returning(Cluster.id)
    )
    return await session.scalar(stmt)


async def lock_cluster_by_name(session: AsyncSession, site_id: str, name_norm: str) -> ClusterRow:
    row = (
        await session.execute(
            select(Cluster.id, Cluster.name, Cluster.name_norm, Cluster.size, Cluster.centroid)
            .where(Cluster.site_id == site_id, Cluster.name_norm == name_norm)
            .with_for_update()
        )
    ).one()
    return ClusterRow(row.id, row.name, row.name_norm, row.size, from_bytes(row.centroid))


async def lock_cluster(session: AsyncSession, cluster_id: int) -> ClusterRow:
    row = (
        await session.execute(
            select(Cluster.id, Cluster.name, Cluster.name_norm, Cluster.size, Cluster.centroid)
            .where(Cluster.id == cluster_id)
            .with_for_update()
        )
    ).one()
    return ClusterRow(row.id, row.name, row.name_norm, row.size, from_bytes(row.centroid))


async def update_cluster(session: AsyncSession, cluster_id: int, centroid: Vectors, size: int) -> None:
    await session.execute(
        update(Cluster).where(Cluster.id == cluster_id).values(centroid=to_bytes(centroid), size=size)
    )


async def assign_keywords(session: AsyncSession, cluster_id: int, keyword_ids: list[int]) -> int:
    """Set the cluster of still-unclustered keywords; returns how many were assigned."""
    result = await session.execute(
        update(Keyword)
        .where(Keyword.id.in_(keyword_ids), Keyword.cluster_id.is_(None))
        .values(cluster_id=cluster_id, clustered_at=utcnow())
        .returning(Keyword.id)
    )
    return len(result.all())


async def pending_without_embedding(
    session: AsyncSession, site_id: str, model: str, exclude: list[int], limit: int
) -> list[KeywordRow]:
    """The site's next unclustered keywords that have no stored embedding yet (prefetch candidates)."""
    if limit <= 0:
        return []
    rows = await session.execute(
        select(Keyword.id, Keyword.keyword, Keyword.volume)
        .where(
            Keyword.site_id == site_id,
            Keyword.cluster_id.is_(None),
            Keyword.id.not_in(exclude),
            ~select(KeywordEmbedding.keyword_id)
            .where(KeywordEmbedding.keyword_id == Keyword.id, KeywordEmbedding.model == model)
            .exists(),
        )
        .order_by(Keyword.id)
        .limit(limit)
    )
    return [KeywordRow(r.id, r.keyword, r.volume or 0) for r in rows]
