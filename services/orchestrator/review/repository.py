"""SQL of the review gate: drafts (read through the site's account), their images, decisions."""

from __future__ import annotations

from sqlalchemy import func, select
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
    return list(rows.tuples())
