"""What is pending at each stage for a site: the orchestrator's read-only view across the owners' tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import Stage
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, Keyword, ReviewDecision, WriterTask

# Stage → (the table of the items it takes in, the column of the table it fills that marks an item done).
_CHILD_OF: dict[Stage, tuple[Any, Any]] = {
    Stage.IDEATE: (Cluster, Idea.cluster_id),
    Stage.TASKS: (Idea, WriterTask.idea_id),
    Stage.DRAFTS: (WriterTask, Draft.task_id),
    Stage.IMAGE_PROMPTS: (Draft, ImagePrompt.draft_id),
    Stage.IMAGES: (ImagePrompt, Image.prompt_id),
}


def pending_query(stage: Stage, site_id: str) -> Select[int]:
    """Ids of the items stage `stage` would process for the site, oldest first."""
    if stage is Stage.CLUSTER:
        return select(Keyword.id).where(Keyword.site_id == site_id, Keyword.cluster_id.is_(None)).order_by(Keyword.id)
    if stage is Stage.REVIEW:
        return review_ready_query(site_id)
    model, done_by = _CHILD_OF[stage]
    return select(model.id).where(model.site_id == site_id, ~exists().where(done_by == model.id)).order_by(model.id)


def review_ready_query(site_id: str) -> Select[int]:
    """Drafts awaiting a decision whose image prompts all have images (and that have at least one)."""
    missing_image = exists().where(ImagePrompt.draft_id == Draft.id, ~exists().where(Image.prompt_id == ImagePrompt.id))
    return (
        select(Draft.id)
        .where(
            Draft.site_id == site_id,
            exists().where(ImagePrompt.draft_id == Draft.id),
            ~missing_image,
            ~exists().where(ReviewDecision.draft_id == Draft.id),
        )
        .order_by(Draft.id)
    )


async def pending_ids(session: AsyncSession, stage: Stage, site_id: str, limit: int | None = None) -> list[int]:
    stmt = pending_query(stage, site_id)
    if limit:
        stmt = stmt.limit(limit)
    return list((await session.scalars(stmt)).all())


async def pending_counts(session: AsyncSession, site_id: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for stage in Stage:
        sub = pending_query(stage, site_id).order_by(None).subquery()
        counts[int(stage)] = int(await session.scalar(select(func.count()).select_from(sub)) or 0)
    return counts
