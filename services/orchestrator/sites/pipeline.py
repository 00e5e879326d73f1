"""What is pending at each stage for a site: the orchestrator's read-only view across the owners' tables.

A targeted run (`RunTarget`) sees only the part of it that descends from the items it names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import RunTarget
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
# The table whose ids a stage takes in.
INPUT: dict[Stage, Any] = {
    Stage.CLUSTER: Keyword,
    Stage.IDEATE: Cluster,
    Stage.TASKS: Idea,
    Stage.DRAFTS: WriterTask,
    Stage.IMAGE_PROMPTS: Draft,
    Stage.IMAGES: ImagePrompt,
    Stage.REVIEW: Draft,
}


def pending_query(stage: Stage, site_id: str, target: RunTarget | None = None) -> Select[Any]:
    """Ids of the items stage `stage` would process for the site, oldest first; parked items are left out."""
    stmt = _pending(stage, site_id)
    if stage is not Stage.REVIEW:
        stmt = stmt.where(not_parked(stage, INPUT[stage].id))
    if target is not None:
        stmt = stmt.where(INPUT[stage].id.in_(scope_ids(stage, target)) if target.includes(stage) else false())
    return stmt


def _pending(stage: Stage, site_id: str) -> Select[Any]:
    if stage is Stage.CLUSTER:  # a disabled keyword is never clustered
        return (
            select(Keyword.id)
            .where(Keyword.site_id == site_id, Keyword.cluster_id.is_(None), Keyword.disabled_at.is_(None))
            .order_by(Keyword.id)
        )
    if stage is Stage.REVIEW:
        return review_ready_query(site_id)
    if stage is Stage.DRAFTS:
        # A task without a live draft that passed the quality gate: none yet, only superseded ones (a person's
        # regeneration), or one the gate held back (the writer writes it again and replaces it).
        usable = exists().where(
            Draft.task_id == WriterTask.id, Draft.superseded_at.is_(None), Draft.quality_passed.is_(True)
        )
        return select(WriterTask.id).where(WriterTask.site_id == site_id, ~usable).order_by(WriterTask.id)
    model, done_by = _CHILD_OF[stage]
    stmt = select(model.id).where(model.site_id == site_id, ~exists().where(done_by == model.id))
    if stage is Stage.IDEATE:  # a cluster emptied by a person's merge or move has nothing to write about
        stmt = stmt.where(Cluster.size > 0)
    if stage is Stage.IMAGE_PROMPTS:  # a held-back draft gets no images: no credits go to it
        stmt = stmt.where(Draft.superseded_at.is_(None), Draft.quality_passed.is_(True))
    return stmt.order_by(model.id)


def scope_ids(stage: Stage, target: RunTarget) -> Select[Any] | Sequence[int]:
    """The ids stage `stage` may take in under `target`: its own items at the target's stage, then what
    descends from them, one link per stage (keyword → cluster → idea → task → draft → prompt → draft)."""
    ids: Select[Any] | Sequence[int] = list(target.item_ids)
    for step in range(target.stage + 1, int(stage) + 1):
        ids = _children(Stage(step), ids)
    return ids


def _children(stage: Stage, parents: Select[Any] | Sequence[int]) -> Select[Any]:
    if stage is Stage.IDEATE:
        return select(Keyword.cluster_id).where(and_(Keyword.id.in_(parents), Keyword.cluster_id.is_not(None)))
    if stage is Stage.TASKS:
        return select(Idea.id).where(Idea.cluster_id.in_(parents))
    if stage is Stage.DRAFTS:
        return select(WriterTask.id).where(WriterTask.idea_id.in_(parents))
    if stage is Stage.IMAGE_PROMPTS:
        return select(Draft.id).where(Draft.task_id.in_(parents))
    if stage is Stage.IMAGES:
        return select(ImagePrompt.id).where(ImagePrompt.draft_id.in_(parents))
    return select(ImagePrompt.draft_id).where(ImagePrompt.id.in_(parents))  # review: the prompts' drafts


def review_ready_query(site_id: str) -> Select[Any]:
    """Drafts awaiting a decision whose image prompts all have images (and that have at least one)."""
    missing_image = exists().where(ImagePrompt.draft_id == Draft.id, ~exists().where(Image.prompt_id == ImagePrompt.id))
    return (
        select(Draft.id)
        .where(
            Draft.site_id == site_id,
            Draft.superseded_at.is_(None),
            exists().where(ImagePrompt.draft_id == Draft.id),
            ~missing_image,
            ~exists().where(ReviewDecision.draft_id == Draft.id),
        )
        .order_by(Draft.id)
    )


async def pending_ids(
    session: AsyncSession, stage: Stage, site_id: str, limit: int | None = None, target: RunTarget | None = None
) -> list[int]:
    stmt = pending_query(stage, site_id, target)
    if limit:
        stmt = stmt.limit(limit)
    return list((await session.scalars(stmt)).all())


async def pending_counts(session: AsyncSession, site_id: str, target: RunTarget | None = None) -> dict[int, int]:
    counts: dict[int, int] = {}
    for stage in Stage:
        sub = pending_query(stage, site_id, target).order_by(None).subquery()
        counts[int(stage)] = int(await session.scalar(select(func.count()).select_from(sub)) or 0)
    return counts
