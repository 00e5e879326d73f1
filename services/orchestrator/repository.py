"""SQL of the orchestrator: accounts, sites, keyword import, runs, batches, stage results, ledger, log."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import SiteConfig
from shared.contracts import KeywordIn, RunStatus
from shared.db.models import (
    ActivityLog,
    Cluster,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    Keyword,
    Run,
    Site,
    SiteConfigRow,
    StageBatch,
    StageRunResult,
    WriterTask,
)
from shared.text import normalise


async def get_site(session: AsyncSession, site_id: str) -> Site | None:
    return await session.get(Site, site_id)


async def insert_keywords(session: AsyncSession, site_id: str, items: list[KeywordIn], source: str) -> int:
    """Insert new keywords; already-known ones (same normalised text) are left alone. Returns inserted."""
    inserted = 0
    for start in range(0, len(items), 5000):
        chunk = items[start : start + 5000]
        stmt = (
            insert(Keyword)
            .values(
                [
                    {
                        "site_id": site_id,
                        "keyword": " ".join(k.keyword.split()),
                        "keyword_norm": normalise(k.keyword),
                        "volume": k.volume,
                        "difficulty": k.difficulty,
                        "source": source,
                    }
                    for k in chunk
                ]
            )
            .on_conflict_do_nothing(constraint="uq_keywords_site_norm")
            .returning(Keyword.id)
        )
        inserted += len((await session.execute(stmt)).all())
    return inserted


async def lock_run(session: AsyncSession, run_id: str) -> Run | None:
    """The run row, locked (FOR NO KEY UPDATE: batches and results reference it) and re-read."""
    return await session.scalar(
        select(Run).where(Run.id == run_id).with_for_update(key_share=True).execution_options(populate_existing=True)
    )


async def active_run(session: AsyncSession, site_id: str) -> Run | None:
    return await session.scalar(
        select(Run).where(
            Run.site_id == site_id, Run.status.in_([s.value for s in (RunStatus.RUNNING, RunStatus.PAUSED)])
        )
    )


async def batch_status_counts(session: AsyncSession, run_id: str, stage: int) -> dict[str, int]:
    rows = await session.execute(
        select(StageBatch.status, func.count())
        .where(StageBatch.run_id == run_id, StageBatch.stage == stage)
        .group_by(StageBatch.status)
    )
    return {status: int(n) for status, n in rows}


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


def log_line(
    session: AsyncSession, site_id: str, run_id: str | None, stage: int | None, message: str, level: str = "info"
) -> None:
    session.add(ActivityLog(site_id=site_id, run_id=run_id, stage=stage, message=message, level=level))


async def review_queue(session: AsyncSession, draft_ids: list[int]) -> list[dict[str, Any]]:
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
    drafts = (await session.scalars(select(Draft).where(Draft.id.in_(draft_ids)).order_by(Draft.id))).all()
    return [
        {
            "draft_id": d.id,
            "title": d.title,
            "slug": d.slug,
            "word_count": d.word_count,
            "target_words": d.target_words,
            "quality_score": d.quality_score,
            "quality_notes": d.quality_notes,
            "low_quality": d.quality_score < 70,
            "images": int(images.get(d.id, 0)),
            "image_prompts": int(prompts.get(d.id, 0)),
            "run_id": d.run_id,
            "created_at": d.created_at.isoformat(),
        }
        for d in drafts
    ]


async def config_row(session: AsyncSession, site_id: str, lock: bool = False) -> SiteConfigRow:
    """The site's config row, created with defaults on first use (concurrent creators are harmless)."""
    await session.execute(
        insert(SiteConfigRow)
        .values(site_id=site_id, config=SiteConfig().model_dump(mode="json"), is_enabled=False)
        .on_conflict_do_nothing()
    )
    stmt = select(SiteConfigRow).where(SiteConfigRow.site_id == site_id)
    row = await session.scalar(stmt.with_for_update().execution_options(populate_existing=True) if lock else stmt)
    assert row is not None
    return row


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


async def item_titles(session: AsyncSession, stage: int, ids: list[int]) -> dict[int, str]:
    """Human-readable names of a batch's items, for the current-processing view."""
    column = {
        1: (Keyword.id, Keyword.keyword),
        2: (Cluster.id, Cluster.name),
        3: (Idea.id, Idea.title),
        4: (WriterTask.id, WriterTask.title),
        5: (Draft.id, Draft.title),
        6: (ImagePrompt.id, ImagePrompt.alt_text),
    }[stage]
    rows = await session.execute(select(*column).where(column[0].in_(ids)))
    return {int(i): str(t) for i, t in rows}
