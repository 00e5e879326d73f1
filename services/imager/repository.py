"""SQL of the imager: it owns image prompts and images (and reads drafts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Draft, Image, ImagePrompt


async def load_drafts(session: AsyncSession, site_id: str, ids: list[int]) -> list[Draft]:
    return list((await session.scalars(select(Draft).where(Draft.site_id == site_id, Draft.id.in_(ids)))).all())


async def drafts_with_prompts(session: AsyncSession, ids: list[int]) -> set[int]:
    return set((await session.scalars(select(ImagePrompt.draft_id).where(ImagePrompt.draft_id.in_(ids)))).all())


async def insert_prompts(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    # rows as parameters, not .values(rows): a VALUES list has no cache key and is compiled every time
    stmt = insert(ImagePrompt).on_conflict_do_nothing().returning(ImagePrompt.id)
    return len((await session.execute(stmt, rows)).all())


async def load_prompts(session: AsyncSession, site_id: str, ids: list[int]) -> list[ImagePrompt]:
    stmt = select(ImagePrompt).where(ImagePrompt.site_id == site_id, ImagePrompt.id.in_(ids))
    return list((await session.scalars(stmt)).all())


async def prompts_with_images(session: AsyncSession, ids: list[int]) -> set[int]:
    return set((await session.scalars(select(Image.prompt_id).where(Image.prompt_id.in_(ids)))).all())


async def insert_images(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    return len((await session.execute(insert(Image).on_conflict_do_nothing().returning(Image.id), rows)).all())
