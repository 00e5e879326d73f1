"""SQL of the review gate: drafts (read through the site's account), their images, decisions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Draft, Image, ImagePrompt, ReviewDecision, Site


async def get_draft(session: AsyncSession, account_id: str, draft_id: int) -> Draft | None:
    """The draft if it belongs to a site of the account; another account's draft is simply not found."""
    return await session.scalar(
        select(Draft).join(Site, Site.id == Draft.site_id).where(Draft.id == draft_id, Site.account_id == account_id)
    )


async def prompts_of(session: AsyncSession, draft_id: int) -> list[ImagePrompt]:
    stmt = select(ImagePrompt).where(ImagePrompt.draft_id == draft_id).order_by(ImagePrompt.position)
    return list((await session.scalars(stmt)).all())


async def images_of(session: AsyncSession, draft_id: int) -> dict[int, Image]:
    return {i.prompt_id: i for i in (await session.scalars(select(Image).where(Image.draft_id == draft_id))).all()}


async def decision(session: AsyncSession, draft_id: int, lock: bool = False) -> ReviewDecision | None:
    return await session.get(ReviewDecision, draft_id, with_for_update=lock or None, populate_existing=lock)


async def images_complete(session: AsyncSession, draft_id: int) -> bool:
    prompts = set((await session.scalars(select(ImagePrompt.id).where(ImagePrompt.draft_id == draft_id))).all())
    done = set((await session.scalars(select(Image.prompt_id).where(Image.draft_id == draft_id))).all())
    return bool(prompts) and prompts <= done


async def queue_rows(session: AsyncSession, account_id: str, draft_ids: list[int]) -> list[tuple[Draft, int, int]]:
    """(draft, images, image prompts) for the given drafts of the account, in id order."""
    if not draft_ids:
        return []
    images = dict(
        (
            await session.execute(
                select(Image.draft_id, func.count()).where(Image.draft_id.in_(draft_ids)).group_by(Image.draft_id)
            )
        ).all()
    )
    prompts = dict(
        (
            await session.execute(
                select(ImagePrompt.draft_id, func.count())
                .where(ImagePrompt.draft_id.in_(draft_ids))
                .group_by(ImagePrompt.draft_id)
            )
        ).all()
    )
    drafts = (
        await session.scalars(
            select(Draft)
            .join(Site, Site.id == Draft.site_id)
            .where(Draft.id.in_(draft_ids), Site.account_id == account_id)
            .order_by(Draft.id)
        )
    ).all()
    return [(d, int(images.get(d.id, 0)), int(prompts.get(d.id, 0))) for d in drafts]


async def published_images(session: AsyncSession, draft_id: int) -> list[tuple[ImagePrompt, Image]]:
    rows = await session.execute(
        select(ImagePrompt, Image)
        .join(Image, Image.prompt_id == ImagePrompt.id)
        .where(ImagePrompt.draft_id == draft_id)
        .order_by(ImagePrompt.position)
    )
    return [(prompt, image) for prompt, image in rows]  # Result.tuples() is deprecated in SQLAlchemy 2.1


@dataclass(frozen=True)
class Candidate:
    """What auto-approval needs of a draft (not its body: a site may have thousands waiting)."""

    id: int
    site_id: str
    quality_score: int


async def candidates(session: AsyncSession, draft_ids: Sequence[int]) -> list[Candidate]:
    """Drafts by id, oldest first (unscoped: for the engine acting on its own site's drafts)."""
    if not draft_ids:
        return []
    rows = await session.execute(
        select(Draft.id, Draft.site_id, Draft.quality_score).where(Draft.id.in_(draft_ids)).order_by(Draft.id)
    )
    return [Candidate(int(i), str(s), int(q)) for i, s, q in rows.all()]


async def add_decision(session: AsyncSession, draft: Candidate, decision: str, note: str, decided_by: str) -> bool:
    """Record a decision unless the draft has one (a person's concurrent decision wins); True when recorded."""
    stmt = (
        insert(ReviewDecision)
        .values(draft_id=draft.id, site_id=draft.site_id, decision=decision, note=note, decided_by=decided_by)
        .on_conflict_do_nothing(index_elements=[ReviewDecision.draft_id])
        .returning(ReviewDecision.draft_id)
    )
    return (await session.scalar(stmt)) is not None
async def decided_ids(session: AsyncSession, account_id: str, site_id: str, decisions: Collection[str]) -> list[int]:
    """Ids of the site's drafts whose decision is one of `decisions`, oldest first (scoped to the account)."""
    stmt = (
        select(ReviewDecision.draft_id)
        .join(Site, Site.id == ReviewDecision.site_id)
        .where(ReviewDecision.site_id == site_id, Site.account_id == account_id, ReviewDecision.decision.in_(decisions))
        .order_by(ReviewDecision.draft_id)
    )
    return list((await session.scalars(stmt)).all())
