"""SQL of the content domain: lists of a site's keywords, clusters, ideas, tasks, drafts and images (reads
across the owners' tables), and a person's catalogue edits (keyword status, cluster membership and names).

Every query takes the site id of a site already checked to be the caller's (`sites.site_of`), and ids in
edits are matched against that site: another site's keyword or cluster is simply not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import (
    Cluster,
    Draft,
    DraftVersion,
    Idea,
    Image,
    ImagePrompt,
    Keyword,
    KeywordEmbedding,
    Publication,
    ReviewDecision,
    Site,
    WriterTask,
)

KEYWORD_SORTS: dict[str, Any] = {
    "id": (Keyword.id,),
    "keyword": (Keyword.keyword_norm, Keyword.id),
    "volume_desc": (Keyword.volume.desc().nulls_last(), Keyword.id),
    "difficulty_desc": (Keyword.difficulty.desc().nulls_last(), Keyword.id),
}
CLUSTER_SORTS: dict[str, Any] = {
    "id": (Cluster.id,),
    "name": (Cluster.name_norm, Cluster.id),
    "size_desc": (Cluster.size.desc(), Cluster.id),
}


async def _page(session: AsyncSession, stmt: Any, order: Sequence[Any], page: int, size: int) -> tuple[int, list[Any]]:
    total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    rows = (await session.execute(stmt.order_by(*order).offset((page - 1) * size).limit(size))).all()
    return total, list(rows)


# ---------------------------------------------------------------- keywords
def keyword_status() -> Any:
    return case(
        (Keyword.disabled_at.is_not(None), "disabled"), (Keyword.cluster_id.is_not(None), "clustered"), else_="pending"
    )


async def keywords(
    session: AsyncSession,
    site_id: str,
    *,
    status: str | None,
    cluster_id: int | None,
    q: str | None,
    intent: str | None = None,
    parent_keyword: str | None = None,
    sort: str,
    page: int,
    size: int,
) -> tuple[int, list[Any]]:
    """(total, rows of (Keyword, status, cluster name)); `q` is normalised, `parent_keyword` as typed."""
    stmt = (
        select(Keyword, keyword_status().label("status"), Cluster.name)
        .outerjoin(Cluster, Cluster.id == Keyword.cluster_id)
        .where(Keyword.site_id == site_id)
    )
    if status is not None:
        stmt = stmt.where(keyword_status() == status)
    if cluster_id is not None:
        stmt = stmt.where(Keyword.cluster_id == cluster_id)
    if q:
        stmt = stmt.where(Keyword.keyword_norm.contains(q, autoescape=True))
    if intent is not None:
        stmt = stmt.where(Keyword.intent.contains([intent]))  # intent @> ARRAY[...]: the GIN index
    if parent_keyword is not None:  # lower(parent_keyword) = ...: the (site_id, lower(parent_keyword)) index
        stmt = stmt.where(func.lower(Keyword.parent_keyword) == " ".join(parent_keyword.split()).lower())
    return await _page(session, stmt, KEYWORD_SORTS[sort], page, size)


async def keyword_rows(session: AsyncSession, site_id: str, ids: Sequence[int]) -> list[Any]:
    """(Keyword, status, cluster name) of the given keywords of the site, as the list shows them."""
    stmt = (
        select(Keyword, keyword_status().label("status"), Cluster.name)
        .outerjoin(Cluster, Cluster.id == Keyword.cluster_id)
        .where(Keyword.site_id == site_id, Keyword.id.in_(list(ids)))
        .order_by(Keyword.id)
    )
    return list((await session.execute(stmt)).all())


async def keywords_by_id(session: AsyncSession, site_id: str, ids: Sequence[int], lock: bool = False) -> list[Keyword]:
    stmt = select(Keyword).where(Keyword.site_id == site_id, Keyword.id.in_(list(ids))).order_by(Keyword.id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return list((await session.scalars(stmt)).all())


async def set_disabled(session: AsyncSession, ids: Sequence[int], at: datetime | None) -> None:
    """Disable (out of its cluster too) or enable again (pending for the next run's clustering)."""
    values: dict[str, Any] = {"disabled_at": at}
    if at is not None:
        values |= {"cluster_id": None, "clustered_at": None}
    await session.execute(update(Keyword).where(Keyword.id.in_(list(ids))).values(**values))


async def assign(session: AsyncSession, ids: Sequence[int], cluster_id: int, at: datetime) -> None:
    await session.execute(
        update(Keyword).where(Keyword.id.in_(list(ids))).values(cluster_id=cluster_id, clustered_at=at)
    )


# ---------------------------------------------------------------- clusters
async def clusters(
    session: AsyncSession, site_id: str, *, q: str | None, min_size: int, sort: str, page: int, size: int
) -> tuple[int, list[Any]]:
    """(total, rows of (Cluster, ideas))."""
    ideas = select(func.count()).where(Idea.cluster_id == Cluster.id).scalar_subquery()
    stmt = select(Cluster, ideas.label("ideas")).where(Cluster.site_id == site_id, Cluster.size >= min_size)
    if q:
        stmt = stmt.where(Cluster.name_norm.contains(q, autoescape=True))
    return await _page(session, stmt, CLUSTER_SORTS[sort], page, size)


async def cluster_rows(session: AsyncSession, site_id: str, ids: Sequence[int]) -> list[Any]:
    """(Cluster, ideas) for the given clusters of the site, in id order."""
    ideas = select(func.count()).where(Idea.cluster_id == Cluster.id).scalar_subquery()
    stmt = (
        select(Cluster, ideas.label("ideas"))
        .where(Cluster.site_id == site_id, Cluster.id.in_(list(ids)))
        .order_by(Cluster.id)
    )
    return list((await session.execute(stmt)).all())


async def top_keywords(session: AsyncSession, cluster_ids: Sequence[int], per_cluster: int) -> dict[int, list[Any]]:
    """Each cluster's first `per_cluster` keywords, highest volume first."""
    if not cluster_ids or per_cluster <= 0:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=Keyword.cluster_id, order_by=(Keyword.volume.desc().nulls_last(), Keyword.id))
        .label("rank")
    )
    ranked = (
        select(Keyword.cluster_id, Keyword.id, Keyword.keyword, Keyword.volume, rank)
        .where(Keyword.cluster_id.in_(list(cluster_ids)))
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.cluster_id, ranked.c.id, ranked.c.keyword, ranked.c.volume)
        .where(ranked.c.rank <= per_cluster)
        .order_by(ranked.c.cluster_id, ranked.c.rank)
    )
    out: dict[int, list[Any]] = {}
    for row in rows:
        out.setdefault(int(row.cluster_id), []).append(row)
    return out


async def lock_clusters(session: AsyncSession, site_id: str, ids: Sequence[int]) -> dict[int, Cluster]:
    """The site's clusters among `ids`, locked in id order (the clusterer locks the rows it joins too)."""
    stmt = (
        select(Cluster)
        .where(Cluster.site_id == site_id, Cluster.id.in_(sorted(set(ids))))
        .order_by(Cluster.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {c.id: c for c in (await session.scalars(stmt)).all()}


async def cluster_by_name(session: AsyncSession, site_id: str, name_norm: str) -> Cluster | None:
    return await session.scalar(select(Cluster).where(Cluster.site_id == site_id, Cluster.name_norm == name_norm))


async def has_ideas(session: AsyncSession, cluster_id: int) -> bool:
    return bool(await session.scalar(select(func.count()).where(Idea.cluster_id == cluster_id)))


async def member_ids(session: AsyncSession, cluster_id: int) -> list[int]:
    stmt = select(Keyword.id).where(Keyword.cluster_id == cluster_id).order_by(Keyword.id)
    return list((await session.scalars(stmt)).all())


async def member_vectors(session: AsyncSession, cluster_id: int) -> list[tuple[str, bytes]]:
    """(embedding model, vector bytes) of every member keyword's stored embeddings."""
    rows = await session.execute(
        select(KeywordEmbedding.model, KeywordEmbedding.vector)
        .join(Keyword, Keyword.id == KeywordEmbedding.keyword_id)
        .where(Keyword.cluster_id == cluster_id)
    )
    return [(r.model, r.vector) for r in rows]


async def member_count(session: AsyncSession, cluster_id: int) -> int:
    return int(await session.scalar(select(func.count()).where(Keyword.cluster_id == cluster_id)) or 0)


def mean_centroid(vectors: list[tuple[str, bytes]], previous: bytes) -> bytes:
    """The mean of the members' embeddings (the clusterer's definition of a centroid: a raw mean, so that it
    can be centred on the site's mean, issue 10), from the embedding model most members have; no member
    embedding → a zero vector of the old width, which the clusterer never matches, so an emptied cluster
    attracts none."""
    width = len(previous) // 4
    if not vectors:
        return np.zeros(width, dtype="<f4").tobytes()
    models: dict[str, int] = {}
    for model, _ in vectors:
        models[model] = models.get(model, 0) + 1
    chosen = max(models, key=lambda m: (models[m], m))
    matrix = np.vstack([np.frombuffer(v, dtype="<f4") for m, v in vectors if m == chosen]).astype(np.float64)
    return np.asarray(matrix.mean(axis=0), dtype="<f4").tobytes()


# ---------------------------------------------------------------- ideas, tasks
async def ideas(
    session: AsyncSession, site_id: str, *, cluster_id: int | None, has_task: bool | None, page: int, size: int
) -> tuple[int, list[Any]]:
    """(total, rows of (Idea, cluster name, has task))."""
    task = select(WriterTask.id).where(WriterTask.idea_id == Idea.id).exists()
    stmt = select(Idea, Cluster.name, task.label("has_task")).join(Cluster, Cluster.id == Idea.cluster_id)
    stmt = stmt.where(Idea.site_id == site_id)
    if cluster_id is not None:
        stmt = stmt.where(Idea.cluster_id == cluster_id)
    if has_task is not None:
        stmt = stmt.where(task if has_task else ~task)
    return await _page(session, stmt, (Idea.id,), page, size)


async def tasks(
    session: AsyncSession, site_id: str, *, has_draft: bool | None, page: int, size: int
) -> tuple[int, list[Any]]:
    """(total, rows of (WriterTask, live draft id, drafts written))."""
    live = select(Draft.id).where(Draft.task_id == WriterTask.id, Draft.superseded_at.is_(None)).scalar_subquery()
    written = select(func.count()).where(Draft.task_id == WriterTask.id).scalar_subquery()
    stmt = select(WriterTask, live.label("draft_id"), written.label("drafts")).where(WriterTask.site_id == site_id)
    if has_draft is not None:
        stmt = stmt.where(live.is_not(None) if has_draft else live.is_(None))
    return await _page(session, stmt, (WriterTask.id,), page, size)


# ---------------------------------------------------------------- drafts, images
def _draft_counts() -> tuple[Any, Any]:
    prompts = select(func.count()).where(ImagePrompt.draft_id == Draft.id).scalar_subquery()
    images = select(func.count()).where(Image.draft_id == Draft.id).scalar_subquery()
    return prompts, images


def draft_status(prompts: Any, images: Any) -> Any:
    return case(
        (Draft.superseded_at.is_not(None), "superseded"),
        (ReviewDecision.decision == "published", "published"),
        (ReviewDecision.decision == "approved", "approved"),
        (ReviewDecision.decision == "rejected", "rejected"),
        (and_(prompts > 0, images >= prompts), "in_review"),
        else_="writing_images",
    )


async def drafts(
    session: AsyncSession,
    site_id: str,
    *,
    status: str | None,
    task_id: int | None,
    q: str | None,
    page: int,
    size: int,
) -> tuple[int, list[Any]]:
    """(total, rows of (Draft, ReviewDecision?, Publication?, status, prompts, images, edited))."""
    prompts, images = _draft_counts()
    status_expr = draft_status(prompts, images)
    edited = select(DraftVersion.id).where(DraftVersion.draft_id == Draft.id).exists()
    stmt = (
        select(
            Draft,
            ReviewDecision,
            Publication,
            status_expr.label("status"),
            prompts.label("prompts"),
            images.label("images"),
            edited.label("edited"),
        )
        .outerjoin(ReviewDecision, ReviewDecision.draft_id == Draft.id)
        .outerjoin(Publication, Publication.draft_id == Draft.id)
        .where(Draft.site_id == site_id)
    )
    if status is not None:
        stmt = stmt.where(status_expr == status)
    if task_id is not None:
        stmt = stmt.where(Draft.task_id == task_id)
    if q:
        stmt = stmt.where(func.lower(Draft.title).contains(q.lower(), autoescape=True))
    return await _page(session, stmt, (Draft.id,), page, size)


async def images(
    session: AsyncSession, site_id: str, *, draft_id: int | None, page: int, size: int
) -> tuple[int, list[Any]]:
    """(total, rows of (Image, ImagePrompt))."""
    stmt = (
        select(Image, ImagePrompt).join(ImagePrompt, ImagePrompt.id == Image.prompt_id).where(Image.site_id == site_id)
    )
    if draft_id is not None:
        stmt = stmt.where(Image.draft_id == draft_id)
    return await _page(session, stmt, (Image.draft_id, ImagePrompt.position, Image.id), page, size)


async def image_of(session: AsyncSession, account_id: str, image_id: int) -> Image | None:
    """The image if it belongs to a site of the account; another account's image is simply not found."""
    return await session.scalar(
        select(Image).join(Site, Site.id == Image.site_id).where(Image.id == image_id, Site.account_id == account_id)
    )
