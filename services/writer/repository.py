"""SQL of the writer: it owns writer tasks and drafts (and reads ideas)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Draft, Idea, WriterTask


async def load_ideas(session: AsyncSession, site_id: str, ids: list[int]) -> list[Idea]:
    return list((await session.scalars(select(Idea).where(Idea.site_id == site_id, Idea.id.in_(ids)))).all())


async def ideas_with_tasks(session: AsyncSession, ids: list[int]) -> set[int]:
    return set((await session.scalars(select(WriterTask.idea_id).where(WriterTask.idea_id.in_(ids)))).all())


async def insert_tasks(session: AsyncSession, rows: list[dict[str, Any]]) -> list[WriterTask]:
    """The tasks really inserted (a redelivered batch's conflicting rows are not among them)."""
    if not rows:
        return []
    result = await session.scalars(insert(WriterTask).values(rows).on_conflict_do_nothing().returning(WriterTask))
    return list(result.all())


async def load_tasks(session: AsyncSession, site_id: str, ids: list[int]) -> list[WriterTask]:
    stmt = select(WriterTask).where(WriterTask.site_id == site_id, WriterTask.id.in_(ids))
    return list((await session.scalars(stmt)).all())


async def tasks_with_drafts(session: AsyncSession, ids: list[int]) -> set[int]:
    """Tasks with a live draft; a superseded one (a rejected draft asked to be regenerated) does not count."""
    stmt = select(Draft.task_id).where(Draft.task_id.in_(ids), Draft.superseded_at.is_(None))
    return set((await session.scalars(stmt)).all())


async def insert_drafts(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Draft]:
    """The drafts really inserted (a redelivered batch's conflicting rows are not among them)."""
    if not rows:
        return []
    result = await session.scalars(insert(Draft).values(rows).on_conflict_do_nothing().returning(Draft))
    return list(result.all())
