"""SQL of the ideator: it owns ideas (and reads clusters and their keywords)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select
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


# The command's clusters and whether each has ideas already, in one statement (issue 13: a read less per
# command); module-level with bound parameters, so its cache key is computed once.
_CLUSTERS = select(
    Cluster.id,
    Cluster.name,
    Cluster.description,
    Cluster.intent,
    exists().where(Idea.cluster_id == Cluster.id).label("has_ideas"),
).where(Cluster.site_id == bindparam("site_id"), Cluster.id.in_(bindparam("ids", expanding=True)))


async def load_clusters(session: AsyncSession, site_id: str, ids: list[int]) -> tuple[list[ClusterBrief], set[int]]:
    """The site's clusters among `ids` with their keywords (by volume), and the ids of those with ideas."""
    clusters = (await session.execute(_CLUSTERS, {"site_id": site_id, "ids": ids})).all()
    keywords: dict[int, list[str]] = {c.id: [] for c in clusters}
    rows = await session.execute(
        select(Keyword.cluster_id, Keyword.keyword)
        .where(Keyword.cluster_id.in_(list(keywords)))
        .order_by(Keyword.cluster_id, Keyword.volume.desc().nulls_last(), Keyword.id)
    )
    for r in rows:
        keywords[r.cluster_id].append(r.keyword)
    briefs = [ClusterBrief(c.id, c.name, c.description, c.intent, keywords[c.id]) for c in clusters]
    return briefs, {c.id for c in clusters if c.has_ideas}


async def insert_ideas(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Idea]:
    """The ideas really inserted (a redelivered batch's conflicting rows are not among them)."""
    if not rows:
        return []
    # rows as parameters, not .values(rows): a VALUES list has no cache key and is compiled every time
    result = await session.scalars(insert(Idea).on_conflict_do_nothing().returning(Idea), rows)
    return list(result.all())
