"""SQL of the imager: it owns image prompts and images (and reads drafts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Draft, Image, ImagePrompt

# A command's input and what of it was done before, in one statement each (a round trip less per command than
# two reads); module-level with bound parameters, so their cache keys are computed once (issue 13).
_DRAFTS = select(Draft, exists().where(ImagePrompt.draft_id == Draft.id)).where(
    Draft.site_id == bindparam("site_id"), Draft.id.in_(bindparam("ids", expanding=True))
)
_PROMPTS = select(ImagePrompt, exists().where(Image.prompt_id == ImagePrompt.id)).where(
    ImagePrompt.site_id == bindparam("site_id"), ImagePrompt.id.in_(bindparam("ids", expanding=True))
)


async def load_drafts(session: AsyncSession, site_id: str, ids: list[int]) -> tuple[list[Draft], set[int]]:
    """The site's drafts among `ids`, and the ids of those that already have image prompts."""
    rows = (await session.execute(_DRAFTS, {"site_id": site_id, "ids": ids})).all()
    return [draft for draft, _ in rows], {draft.id for draft, done in rows if done}


async def insert_prompts(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    # rows as parameters, not .values(rows): a VALUES list has no cache key and is compiled every time
    stmt = insert(ImagePrompt).on_conflict_do_nothing().returning(ImagePrompt.id)
    return len((await session.execute(stmt, rows)).all())


async def load_prompts(session: AsyncSession, site_id: str, ids: list[int]) -> tuple[list[ImagePrompt], set[int]]:
    """The site's image prompts among `ids`, and the ids of those that already have an image."""
    rows = (await session.execute(_PROMPTS, {"site_id": site_id, "ids": ids})).all()
    return [prompt for prompt, _ in rows], {prompt.id for prompt, done in rows if done}


async def insert_images(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    return len((await session.execute(insert(Image).on_conflict_do_nothing().returning(Image.id), rows)).all())
