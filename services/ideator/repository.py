"""SQL of the ideator: it owns ideas (and reads clusters and their keywords)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Cluster, Idea, Keyword


@dataclass
class ClusterBrief:
    id: int
    name: str
    description: str
    intent: str
    keywords: list[str]


async def load_clusters(session: AsyncSession, site_id: str, ids: list[int]) -> list[ClusterBrief]:
    clusters = (
        await session.execute(
            select(Cluster.id, Cluster.name, Cluster.description, Cluster.intent).where(
                Cluster.site_id == site_id, Cluster.id.in_(ids)
            )
        )
    ).all()
    keywords: dict[int, list[str]] = {c.id: [] for c in clusters}
    rows = await session.execute(
        select(Keyword.cluster_id, Keyword.keyword)
        .where(Keyword.cluster_id.in_(list(keywords)))
        .order_by(Keyword.cluster_id, Keyword.volume.desc().nulls_last(), Keyword.id)
    )
    for r in rows:
        keywords[r.cluster_id].append(r.keyword)
    return [ClusterBrief(c.id, c.name, c.description, c.intent, keywords[c.id]) for c in clusters]


async def clusters_with_ideas(session: AsyncSession, ids: list[int]) -> set[int]:
    rows = await session.execute(
        select(Idea.cluster_id).where(Idea.cluster_id.in_(ids)).group_by(Idea.cluster_id).having(func.count() > 0)
    )
    return {r.cluster_id for r in rows}


async def insert_ideas(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Idea]:
    """The ideas really inserted (a redelivered batch's conflicting rows are not among them)."""
    if not rows:
        return []
    # rows as parameters, not .values(rows): a VALUES list has no cache key and is compiled every time
    result = await session.scalars(insert(Idea).on_conflict_do_nothing().returning(Idea), rows)
    return list(result.all())
