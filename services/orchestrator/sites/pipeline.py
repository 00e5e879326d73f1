"""What is pending at each stage for a site: the orchestrator's read-only view across the owners' tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.sites.parking import not_parked
from shared.contracts import Stage
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, Keyword, ReviewDecision, WriterTask

# Stage → (the table of the items it takes in, the column of the table it fills that marks an item done).
_CHILD_OF: dict[Stage, tuple[Any, Any]] = {
    Stage.IDEATE: (Cluster, Idea.cluster_id),
    Stage.TASKS: (Idea, WriterTask.idea_id),
    Stage.IMAGE_PROMPTS: (Draft, ImagePrompt.draft_id),
    Stage.IMAGES: (ImagePrompt, Image.prompt_id),
}


def pending_query(stage: Stage, site_id: str) -> Select[int]:
    """Ids of the items stage `stage` would process for the site, oldest first; parked items are left out."""
    if stage is Stage.CLUSTER:
        return (
            select(Keyword.id)
            .where(Keyword.site_id == site_id, Keyword.cluster_id.is_(None), not_parked(stage, Keyword.id))
            .order_by(Keyword.id)
        )
    if stage is Stage.REVIEW:
        return review_ready_query(site_id)
    if stage is Stage.DRAFTS:  # a task without a draft, or whose draft the quality gate held back: regeneration
        usable = exists().where(Draft.task_id == WriterTask.id, Draft.quality_passed.is_(True))
        return (
            select(WriterTask.id)
            .where(WriterTask.site_id == site_id, ~usable, not_parked(stage, WriterTask.id))
            .order_by(WriterTask.id)
        )
    model, done_by = _CHILD_OF[stage]
    stmt = select(model.id).where(model.site_id == site_id, ~exists().where(done_by == model.id))
    if stage is Stage.IMAGE_PROMPTS:  # a held-back draft gets no images: no credits go to it
        stmt = stmt.where(Draft.quality_passed.is_(True))
    return stmt.where(not_parked(stage, model.id)).order_by(model.id)


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
