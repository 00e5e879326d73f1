"""SQL of the runs domain: runs, their batches and stage results, reservations, the run log's reads.

Reads for a caller take its account and filter by it (`Run.account_id`, or the site's account for the
activity log). The engine's own steps (results, ticker, schedules) act on ids the orchestrator issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import RunStatus
from shared.db.models import (
    ActivityLog,
    AiCall,
    Cluster,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    Keyword,
    Run,
    Site,
    StageBatch,
    StageRunResult,
    WriterTask,
)

ACTIVE = [RunStatus.RUNNING.value, RunStatus.PAUSED.value]


# ---------------------------------------------------------------- a caller's reads
async def get_run(session: AsyncSession, account_id: str, run_id: str) -> Run | None:
    return await session.scalar(select(Run).where(Run.id == run_id, Run.account_id == account_id))


async def lock_own_run(session: AsyncSession, account_id: str, run_id: str) -> Run | None:
    """The caller's run, locked like `lock_run`; None for an unknown id or another account's."""
    return await session.scalar(
        select(Run)
        .where(Run.id == run_id, Run.account_id == account_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


async def count_runs(session: AsyncSession, account_id: str, site_id: str) -> int:
    stmt = select(func.count()).select_from(Run).where(Run.site_id == site_id, Run.account_id == account_id)
    return int(await session.scalar(stmt) or 0)


async def runs_page(session: AsyncSession, account_id: str, site_id: str, page: int, size: int) -> list[Run]:
    stmt = (
        select(Run)
        .where(Run.site_id == site_id, Run.account_id == account_id)
        .order_by(Run.started_at.desc(), Run.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list((await session.scalars(stmt)).all())


async def own_active_run(session: AsyncSession, account_id: str, site_id: str) -> Run | None:
    return await session.scalar(
        select(Run).where(Run.site_id == site_id, Run.account_id == account_id, Run.status.in_(ACTIVE))
    )


async def activity(
    session: AsyncSession, account_id: str, run_id: str, stage: int | None, limit: int
) -> list[ActivityLog]:
    stmt = (
        select(ActivityLog)
        .join(Site, Site.id == ActivityLog.site_id)
        .where(ActivityLog.run_id == run_id, Site.account_id == account_id)
    )
    if stage is not None:
        stmt = stmt.where(ActivityLog.stage == stage)
    rows = (await session.scalars(stmt.order_by(ActivityLog.id.desc()).limit(limit))).all()
    return list(reversed(rows))


async def stage_results(session: AsyncSession, run_id: str) -> list[StageRunResult]:
    stmt = select(StageRunResult).where(StageRunResult.run_id == run_id).order_by(StageRunResult.stage)
    return list((await session.scalars(stmt)).all())


async def account_of_site(session: AsyncSession, site_id: str) -> str:
    return str(await session.scalar(select(Site.account_id).where(Site.id == site_id)))


async def stage_history(
    session: AsyncSession, runs_per_stage: int, *, site_id: str | None = None, account_id: str | None = None
) -> list[tuple[int, int, int, Decimal, dict[str, Any]]]:
    """(stage, items attempted, items created, credits, the run's plan) of the latest finished runs of a site
    (or of all sites of an account) that did each stage's work (a closed stage that took items in), newest
    first, up to `runs_per_stage` per stage."""
    assert (site_id is None) != (account_id is None), "one scope: a site or an account"
    scope = Run.site_id == site_id if site_id is not None else Run.account_id == account_id
    ranked = (
        select(
            StageRunResult.stage,
            (StageRunResult.items_processed + StageRunResult.items_failed).label("attempted"),
            StageRunResult.items_created,
            StageRunResult.credits,
            Run.options,
            func.row_number().over(partition_by=StageRunResult.stage, order_by=Run.started_at.desc()).label("n"),
        )
        .join(Run, Run.id == StageRunResult.run_id)
        .where(
            scope,
            Run.status.not_in(ACTIVE),
            StageRunResult.status == "completed",
            StageRunResult.items_processed + StageRunResult.items_failed > 0,
        )
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.stage, ranked.c.attempted, ranked.c.items_created, ranked.c.credits, ranked.c.options).where(
            ranked.c.n <= runs_per_stage
        )
    )
    return [(int(s), int(i), int(c), Decimal(cr), dict(o)) for s, i, c, cr, o in rows]


async def token_rows(session: AsyncSession, run_id: str) -> list[tuple[int, bool, int, int, int]]:
    """(stage, ok, calls, prompt tokens, completion tokens) of the run's model calls (the workers' `ai_calls`
    rows, read-only), by the stage of the command each call served."""
    rows = await session.execute(
        select(
            StageBatch.stage,
            AiCall.ok,
            func.count(),
            func.coalesce(func.sum(AiCall.prompt_tokens), 0),
            func.coalesce(func.sum(AiCall.completion_tokens), 0),
        )
        .join(StageBatch, StageBatch.id == AiCall.command_id)
        .where(AiCall.run_id == run_id)
        .group_by(StageBatch.stage, AiCall.ok)
    )
    return [(int(stage), bool(ok), int(n), int(p), int(c)) for stage, ok, n, p, c in rows]


async def released_batches(session: AsyncSession, run_id: str) -> list[StageBatch]:
    stmt = (
        select(StageBatch)
        .where(StageBatch.run_id == run_id, StageBatch.status == "released")
        .order_by(StageBatch.stage, StageBatch.seq)
    )
    return list((await session.scalars(stmt)).all())


async def held_by_active_runs(session: AsyncSession, account_id: str) -> Decimal:
    """Credits the account's active runs still hold back: reserved minus already used."""
    held = await session.scalar(
        select(func.coalesce(func.sum(func.greatest(Run.reserved_credits - Run.total_credits_used, 0)), 0)).where(
            Run.account_id == account_id, Run.status.in_(ACTIVE)
        )
    )
    return Decimal(held or 0)


# ---------------------------------------------------------------- the engine
async def lock_run(session: AsyncSession, run_id: str) -> Run | None:
    """The run row, locked (FOR NO KEY UPDATE: batches and results reference it) and re-read."""
    return await session.scalar(
        select(Run).where(Run.id == run_id).with_for_update(key_share=True).execution_options(populate_existing=True)
    )


async def try_lock_running(session: AsyncSession, run_id: str) -> Run | None:
    """The run locked, unless another replica holds it right now (SKIP LOCKED)."""
    return await session.scalar(
        select(Run)
        .where(Run.id == run_id)
        .with_for_update(skip_locked=True, key_share=True)
        .execution_options(populate_existing=True)
    )


async def running_run_ids(session: AsyncSession, after: str, page: int) -> list[str]:
    stmt = select(Run.id).where(Run.status == RunStatus.RUNNING.value, Run.id > after).order_by(Run.id).limit(page)
    return list((await session.scalars(stmt)).all())


async def batch_runs(session: AsyncSession, command_ids: list[str]) -> dict[str, str]:
    """command id → run id of the batches this orchestrator issued (unknown ids are left out)."""
    rows = await session.execute(select(StageBatch.id, StageBatch.run_id).where(StageBatch.id.in_(command_ids)))
    return {str(command_id): str(run_id) for command_id, run_id in rows}


async def lock_batches(session: AsyncSession, command_ids: list[str]) -> dict[str, StageBatch]:
    stmt = (
        select(StageBatch)
        .where(StageBatch.id.in_(command_ids))
        .order_by(StageBatch.id)  # one lock order for every transaction that takes several
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {b.id: b for b in (await session.scalars(stmt)).all()}


async def overdue_batches(session: AsyncSession, run_id: str, deadline: datetime) -> list[StageBatch]:
    stmt = (
        select(StageBatch)
        .where(StageBatch.run_id == run_id, StageBatch.status == "released", StageBatch.released_at < deadline)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def silent_batches(session: AsyncSession, run_id: str, released_before: datetime) -> list[StageBatch]:
    """Released batches without a result since before `released_before`: candidates for a re-ask."""
    stmt = (
        select(StageBatch)
        .where(StageBatch.run_id == run_id, StageBatch.status == "released", StageBatch.released_at < released_before)
        .order_by(StageBatch.stage, StageBatch.seq)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def unanswered_expired(
    session: AsyncSession, now: datetime, silence: float, doublings: int, horizon: timedelta, limit: int
) -> list[tuple[StageBatch, Run]]:
    """Batches failed by their stage deadline that got no result since and are due to be asked again
    (released_at + silence × (2^sends − 1) has passed), of runs started within `horizon`; locked, and
    skipped when another replica holds them. Runs are few next to batches: the scan starts from them."""
    due = StageBatch.released_at + timedelta(seconds=silence) * (
        func.power(2, func.least(StageBatch.attempt, doublings)) - 1
    )
    stmt = (
        select(StageBatch, Run)
        .join(Run, Run.id == StageBatch.run_id)
        .where(
            Run.started_at > now - horizon,
            StageBatch.status == "failed",
            StageBatch.released_at.is_not(None),  # held-back batches were never sent
            due <= now,
        )
        .order_by(StageBatch.released_at)
        .limit(limit)
        .with_for_update(of=StageBatch, skip_locked=True)
    )
    return [(b, r) for b, r in (await session.execute(stmt)).all()]


async def longest_answered_waits(session: AsyncSession, run_id: str) -> dict[int, float]:
    """Per stage of the run: the longest time from release to result among its answered batches."""
    wait = func.max(func.extract("epoch", StageBatch.finished_at - StageBatch.released_at))
    rows = await session.execute(
        select(StageBatch.stage, wait)
        .where(StageBatch.run_id == run_id, StageBatch.status == "done", StageBatch.released_at.is_not(None))
        .group_by(StageBatch.stage)
    )
    return {int(stage): float(seconds) for stage, seconds in rows if seconds is not None}


async def failed_batches(session: AsyncSession, run_id: str, stage: int) -> list[StageBatch]:
    """The stage's batches that failed without a result (expired, or held back) and got none since."""
    stmt = (
        select(StageBatch)
        .where(StageBatch.run_id == run_id, StageBatch.stage == stage, StageBatch.status == "failed")
        .order_by(StageBatch.seq)
    )
    return list((await session.scalars(stmt)).all())


# Stage → (the table holding what it makes, the id of what it makes, the id of the input item it was made from).
_MAKES: dict[int, tuple[Any, Any, Any]] = {
    1: (Keyword, Keyword.cluster_id, Keyword.id),  # a keyword makes (joins) its cluster
    2: (Idea, Idea.id, Idea.cluster_id),
    3: (WriterTask, WriterTask.id, WriterTask.idea_id),
    4: (Draft, Draft.id, Draft.task_id),
    5: (ImagePrompt, ImagePrompt.id, ImagePrompt.draft_id),
    6: (Image, Image.id, Image.prompt_id),
}


async def made_from(session: AsyncSession, stage: int, site_id: str, parents: list[int]) -> set[int]:
    """Ids of the items stage `stage` (2-6) takes in that were made from these items of the stage before."""
    if not 2 <= stage <= 6 or not parents:
        return set()
    model, made, parent = _MAKES[stage - 1]
    stmt = select(made).distinct().where(model.site_id == site_id, parent.in_(parents), made.is_not(None))
    return {int(i) for i in (await session.scalars(stmt)).all()}


async def items_with_output(session: AsyncSession, stage: int, site_id: str, items: list[int]) -> set[int]:
    """Which of these input items of `stage` have their output in the database (every worker stage)."""
    if stage not in _MAKES or not items:
        return set(items)
    model, made, item = _MAKES[stage]
    stmt = select(item).distinct().where(model.site_id == site_id, item.in_(items), made.is_not(None))
    if stage == 4:  # the task's live draft (a regenerated task keeps its superseded ones as history)
        stmt = stmt.where(Draft.superseded_at.is_(None))
    return {int(i) for i in (await session.scalars(stmt)).all()}


async def active_run(session: AsyncSession, site_id: str) -> Run | None:
    return await session.scalar(select(Run).where(Run.site_id == site_id, Run.status.in_(ACTIVE)))


async def unfinished_items(session: AsyncSession, run_id: str, stage: int) -> list[int]:
    """Item ids of the stage's batches that are planned or out with a worker (pending or released)."""
    rows = await session.scalars(
        select(StageBatch.item_ids).where(
            StageBatch.run_id == run_id, StageBatch.stage == stage, StageBatch.status.in_(["pending", "released"])
        )
    )
    return [int(i) for ids in rows for i in ids]


async def batch_status_counts(session: AsyncSession, run_id: str, stage: int) -> dict[str, int]:
    rows = await session.execute(
        select(StageBatch.status, func.count())
        .where(StageBatch.run_id == run_id, StageBatch.stage == stage)
        .group_by(StageBatch.status)
    )
    return {status: int(n) for status, n in rows}


@dataclass(frozen=True)
class BatchCensus:
    """A run's batches by stage and status, with the estimated cost of those out (released, any stage)."""

    counts: dict[int, dict[str, int]]
    released_cost: Decimal

    def of(self, stage: int) -> dict[str, int]:
        return dict(self.counts.get(stage, {}))

    @property
    def in_flight(self) -> tuple[int, Decimal]:
        return sum(c.get("released", 0) for c in self.counts.values()), self.released_cost


async def batch_census(session: AsyncSession, run_id: str) -> BatchCensus:
    """What `batch_status_counts` and `inflight` tell, in one statement: the barrier asks both for every group
    of results (issue 13; a run has a few hundred batches, read through ix_stage_batches_run_stage_status)."""
    rows = await session.execute(
        select(StageBatch.stage, StageBatch.status, func.count(), func.coalesce(func.sum(StageBatch.estimate), 0))
        .where(StageBatch.run_id == run_id)
        .group_by(StageBatch.stage, StageBatch.status)
    )
    counts: dict[int, dict[str, int]] = {}
    released_cost = Decimal(0)
    for stage, status, n, cost in rows:
        counts.setdefault(int(stage), {})[status] = int(n)
        if status == "released":
            released_cost += Decimal(cost)
    return BatchCensus(counts, released_cost)


async def pending_batches(session: AsyncSession, run_id: str, stage: int, limit: int) -> list[StageBatch]:
    stmt = (
        select(StageBatch)
        .where(StageBatch.run_id == run_id, StageBatch.stage == stage, StageBatch.status == "pending")
        .order_by(StageBatch.seq)
        .limit(limit)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def stage_result(session: AsyncSession, run_id: str, stage: int) -> StageRunResult | None:
    return await session.get(StageRunResult, (run_id, stage), with_for_update=True, populate_existing=True)


async def inflight(session: AsyncSession, run_id: str, stage: int | None = None) -> tuple[int, Decimal]:
    """Released batches without a result yet, and their estimated cost."""
    stmt = select(func.count(), func.coalesce(func.sum(StageBatch.estimate), 0)).where(
        StageBatch.run_id == run_id, StageBatch.status == "released"
    )
    if stage is not None:
        stmt = stmt.where(StageBatch.stage == stage)
    count, total = (await session.execute(stmt)).one()
    return int(count), Decimal(total)


async def last_release(session: AsyncSession, run_id: str, stage: int) -> datetime | None:
    return await session.scalar(
        select(func.max(StageBatch.released_at)).where(StageBatch.run_id == run_id, StageBatch.stage == stage)
    )


async def close_pending_batches(session: AsyncSession, run_id: str, status: str, stage: int | None = None) -> int:
    """Mark a run's unreleased batches (of one stage, or all) `cancelled` or `skipped`; returns how many."""
    stmt = update(StageBatch).where(StageBatch.run_id == run_id, StageBatch.status == "pending")
    if stage is not None:
        stmt = stmt.where(StageBatch.stage == stage)
    return len((await session.execute(stmt.values(status=status).returning(StageBatch.id))).all())


async def item_titles(session: AsyncSession, stage: int, site_id: str, ids: list[int]) -> dict[int, str]:
    """Human-readable names of a batch's items, for the current-processing view (only the site's own)."""
    model: Any
    model, title = {
        1: (Keyword, Keyword.keyword),
        2: (Cluster, Cluster.name),
        3: (Idea, Idea.title),
        4: (WriterTask, WriterTask.title),
        5: (Draft, Draft.title),
        6: (ImagePrompt, ImagePrompt.alt_text),
    }[stage]
    rows = await session.execute(select(model.id, title).where(model.id.in_(ids), model.site_id == site_id))
    return {int(i): str(t) for i, t in rows}
