"""Failing and parked items: a failed item stays pending, so the next run tries it again; one that failed
`park_after_failed_runs` runs in a row is parked instead, with its reasons, until a person un-parks it.

A row per (stage, item) that failed its latest attempt: `failed_runs` counts the runs in a row that failed it
(a second failure in the same run does not count twice), a success deletes the row. Stage deadlines that
expire (workers down) are not the item's fault and are not counted. Stage 4's items are writer tasks, so a
draft the quality gate held back counts against its task: the task is written again by the next run
(regeneration) until it passes or is parked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import NotFoundError
from services.orchestrator.sites import repository as repo
from shared.contracts import utcnow
from shared.db.models import Cluster, Draft, FailingItem, Idea, ImagePrompt, Keyword, WriterTask

KEPT_REASONS = 5


def not_parked(stage: int, item_id: Any) -> ColumnElement[bool]:
    """For the pending queries: the item (a column of the stage's input table) is not parked."""
    return ~exists().where(
        FailingItem.stage == stage, FailingItem.item_id == item_id, FailingItem.parked_at.is_not(None)
    )


async def clear_streaks(session: AsyncSession, stage: int, succeeded: Sequence[int]) -> None:
    """Items that succeeded: their failure streaks end (a parked item stays parked until a person un-parks it)."""
    if succeeded:
        await session.execute(
            delete(FailingItem).where(
                FailingItem.stage == stage, FailingItem.item_id.in_(list(succeeded)), FailingItem.parked_at.is_(None)
            )
        )


async def record_outcomes(
    session: AsyncSession,
    site_id: str,
    stage: int,
    run_id: str,
    item_ids: Sequence[int],
    failures: Iterable[tuple[int, str]],
    park_after: int,
) -> list[FailingItem]:
    """One batch's result: its successes clear their streaks, its failures extend them. Returns the items this
    result parked. The caller holds the run row locked; one site has one active run, so no two results of
    one site's items meet here at once."""
    failed: dict[int, str] = {}
    for item_id, reason in failures:
        failed.setdefault(int(item_id), reason)
    await clear_streaks(session, stage, [int(i) for i in item_ids if int(i) not in failed])
    if not failed:
        return []
    rows = await session.scalars(
        select(FailingItem)
        .where(FailingItem.stage == stage, FailingItem.item_id.in_(list(failed)))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    existing = {row.item_id: row for row in rows}
    now = utcnow()
    parked: list[FailingItem] = []
    for item_id, reason in failed.items():
        row = existing.get(item_id)
        entry = {"run_id": run_id, "reason": reason[:500], "at": now.isoformat()}
        if row is None:
            row = FailingItem(
                stage=stage, item_id=item_id, site_id=site_id, failed_runs=1, last_run_id=run_id, reasons=[entry],
                first_failed_at=now, last_failed_at=now,
            )  # fmt: skip
            session.add(row)
        elif row.last_run_id != run_id:
            row.failed_runs += 1
            row.last_run_id, row.last_failed_at = run_id, now
            row.reasons = [*row.reasons, entry][-KEPT_REASONS:]
        if park_after and row.parked_at is None and row.failed_runs >= park_after:
            row.parked_at = now
            parked.append(row)
    await session.flush()
    return parked


async def list_items(
    session: AsyncSession, site_id: str, *, parked_only: bool, stage: int | None, limit: int
) -> list[FailingItem]:
    stmt = select(FailingItem).where(FailingItem.site_id == site_id)
    if parked_only:
        stmt = stmt.where(FailingItem.parked_at.is_not(None))
    if stage is not None:
        stmt = stmt.where(FailingItem.stage == stage)
    stmt = stmt.order_by(FailingItem.stage, FailingItem.item_id).limit(limit)
    return list((await session.scalars(stmt)).all())


async def item(session: AsyncSession, stage: int, item_id: int) -> FailingItem | None:
    return await session.get(FailingItem, (stage, item_id))


async def unpark(session: AsyncSession, site_id: str, items: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """Forget the parked items' streaks (the next run takes them in again); returns those that were parked."""
    done: set[tuple[int, int]] = set()
    for stage, item_id in dict.fromkeys(items):
        result = await session.execute(
            delete(FailingItem)
            .where(
                FailingItem.site_id == site_id,
                FailingItem.stage == stage,
                FailingItem.item_id == item_id,
                FailingItem.parked_at.is_not(None),
            )
            .returning(FailingItem.item_id)
        )
        if result.first() is not None:
            done.add((stage, item_id))
    return done


# Stage → (the table of its items, the column that names one), for the listing's titles.
_TITLES: dict[int, tuple[Any, Any]] = {
    1: (Keyword, Keyword.keyword),
    2: (Cluster, Cluster.name),
    3: (Idea, Idea.title),
    4: (WriterTask, WriterTask.title),
    5: (Draft, Draft.title),
    6: (ImagePrompt, ImagePrompt.alt_text),
}


async def titles(session: AsyncSession, site_id: str, rows: Sequence[FailingItem]) -> dict[tuple[int, int], str]:
    out: dict[tuple[int, int], str] = {}
    for stage in sorted({r.stage for r in rows}):
        model, column = _TITLES[stage]
        ids = [r.item_id for r in rows if r.stage == stage]
        found = await session.execute(select(model.id, column).where(model.id.in_(ids), model.site_id == site_id))
        out |= {(stage, int(i)): str(t) for i, t in found}
    return out


async def _site_of(session: AsyncSession, account_id: str, site_id: str) -> None:
    if await repo.get_site(session, account_id, site_id) is None:
        raise NotFoundError(f"site {site_id!r} does not exist")


class ParkingService:
    """The API's side: a caller's failing and parked items, and un-parking (every call scoped to the caller)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], park_after: int) -> None:
        self._sessions = sessions
        self.park_after = park_after

    async def items(
        self, account_id: str, site_id: str, *, parked_only: bool, stage: int | None, limit: int
    ) -> tuple[list[FailingItem], dict[tuple[int, int], str]]:
        async with self._sessions() as session:
            await _site_of(session, account_id, site_id)
            rows = await list_items(session, site_id, parked_only=parked_only, stage=stage, limit=limit)
            return rows, await titles(session, site_id, rows)

    async def unpark(self, account_id: str, site_id: str, items: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
        async with self._sessions.begin() as session:
            await _site_of(session, account_id, site_id)
            done = await unpark(session, site_id, items)
            for stage, item_id in sorted(done):
                repo.log_line(session, site_id, None, stage, f"stage {stage} item {item_id} un-parked by request")
            return done
