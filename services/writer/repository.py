"""SQL of the writer: it owns writer tasks and drafts (and reads ideas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Draft, Idea, ImagePrompt, WriterTask


async def load_ideas(session: AsyncSession, site_id: str, ids: list[int]) -> list[Idea]:
    return list((await session.scalars(select(Idea).where(Idea.site_id == site_id, Idea.id.in_(ids)))).all())


async def ideas_with_tasks(session: AsyncSession, ids: list[int]) -> set[int]:
    return set((await session.scalars(select(WriterTask.idea_id).where(WriterTask.idea_id.in_(ids)))).all())


async def insert_tasks(session: AsyncSession, rows: list[dict[str, Any]]) -> list[WriterTask]:
    """The tasks really inserted (a redelivered batch's conflicting rows are not among them)."""
    if not rows:
        return []
    result = await session.scalars(insert(WriterTask).on_conflict_do_nothing().returning(WriterTask), rows)
    return list(result.all())


@dataclass(frozen=True)
class ExistingDraft:
    id: int
    quality_passed: bool
    run_id: str | None


# A command's tasks with the live draft each has (at most one: uq_drafts_live_task), in one statement (issue 13:
# a read less per command); a superseded draft (a rejected one asked to be regenerated) does not count.
_TASKS = (
    select(WriterTask, Draft.id, Draft.quality_passed, Draft.run_id)
    .outerjoin(Draft, and_(Draft.task_id == WriterTask.id, Draft.superseded_at.is_(None)))
    .where(WriterTask.site_id == bindparam("site_id"), WriterTask.id.in_(bindparam("ids", expanding=True)))
)


async def load_tasks(
    session: AsyncSession, site_id: str, ids: list[int]
) -> tuple[list[WriterTask], dict[int, ExistingDraft]]:
    """The site's writer tasks among `ids`, and the live draft each already has, by task id."""
    rows = (await session.execute(_TASKS, {"site_id": site_id, "ids": ids})).all()
    existing = {
        task.id: ExistingDraft(int(draft), bool(passed), run) for task, draft, passed, run in rows if draft is not None
    }
    return [task for task, *_ in rows], existing


async def insert_drafts(session: AsyncSession, rows: list[dict[str, Any]]) -> list[Draft]:
    """The drafts really inserted (a redelivered batch's conflicting rows are not among them)."""
    if not rows:
        return []
    result = await session.scalars(insert(Draft).on_conflict_do_nothing().returning(Draft), rows)
    return list(result.all())


async def replace_draft(session: AsyncSession, draft_id: int, row: dict[str, Any]) -> bool:
    """Regeneration: a draft the quality gate held back is overwritten by its task's new one (same id).
    Only while it is still held and has no image prompts: a draft that went on meanwhile stays as it is."""
    stmt = (
        update(Draft)
        .where(
            Draft.id == draft_id,
            Draft.quality_passed.is_(False),
            Draft.superseded_at.is_(None),
            ~exists().where(ImagePrompt.draft_id == Draft.id),
        )
        .values(**{k: v for k, v in row.items() if k not in ("site_id", "task_id")}, created_at=func.now())
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
