"""SQL of the sites domain: sites, keyword import and export, per-site config, global budget shares,
the activity log. Queries that read customer rows take the caller's account and filter by it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import SiteConfig
from shared.db.models import ActivityLog, GlobalBudgetShare, Site, SiteConfigRow

INSERT_CHUNK = 5000

# One statement per chunk: the rows travel as arrays (asyncpg encodes them in C), and the new rows come back
# (their keyword_added events go out with them). A known keyword (same normalised text) keeps its row;
# figures it lacks (intent, parent keyword, metrics a re-export adds) are filled in, what it has is never
# overwritten. Intents travel '|'-joined (an array of arrays cannot be unnested row by row), metrics as JSON.
_INSERT_KEYWORDS = text(
    """
    WITH ins AS (
        INSERT INTO keywords AS kw
            (site_id, keyword, keyword_norm, volume, difficulty, source, intent, parent_keyword, metrics)
        SELECT :site_id, k, n, v, d, :source, CAST(string_to_array(i, '|') AS varchar(20)[]), p, CAST(m AS jsonb)
        FROM unnest(CAST(:k AS text[]), CAST(:n AS text[]), CAST(:v AS integer[]), CAST(:d AS integer[]),
                    CAST(:i AS text[]), CAST(:p AS text[]), CAST(:m AS text[]))
             AS t(k, n, v, d, i, p, m)
        ON CONFLICT ON CONSTRAINT uq_keywords_site_norm DO UPDATE
            SET intent = COALESCE(kw.intent, EXCLUDED.intent),
                parent_keyword = COALESCE(kw.parent_keyword, EXCLUDED.parent_keyword),
                metrics = EXCLUDED.metrics || kw.metrics
            WHERE (kw.intent IS NULL AND EXCLUDED.intent IS NOT NULL)
               OR (kw.parent_keyword IS NULL AND EXCLUDED.parent_keyword IS NOT NULL)
               OR (EXCLUDED.metrics || kw.metrics) <> kw.metrics
        RETURNING id, keyword, volume, difficulty, xmax = 0 AS inserted
    )
    SELECT id, keyword, volume, difficulty FROM ins WHERE inserted
    """
)


async def get_site(session: AsyncSession, account_id: str, site_id: str) -> Site | None:
    return await session.scalar(select(Site).where(Site.id == site_id, Site.account_id == account_id))


async def get_site_unscoped(session: AsyncSession, site_id: str) -> Site | None:
    """For the engine acting on ids it issued itself (schedules, results); never for a caller's id."""
    return await session.get(Site, site_id)


async def list_sites(session: AsyncSession, account_id: str, page: int, size: int) -> list[Site]:
    stmt = (
        select(Site)
        .where(Site.account_id == account_id)
        .order_by(Site.created_at, Site.id)
        .offset((page - 1) * size)
        .limit(size)
    )
    return list((await session.scalars(stmt)).all())


async def insert_keywords(
    session: AsyncSession,
    site_id: str,
    source: str,
    keywords: Sequence[str],
    norms: Sequence[str],
    volumes: Sequence[int | None],
    difficulties: Sequence[int | None],
    intents: Sequence[str | None],
    parents: Sequence[str | None],
    metrics: Sequence[str],
) -> list[tuple[int, str, int | None, int | None]]:
    """Insert in chunks (the event loop serves other requests between them); returns the new rows as
    (id, keyword, volume, difficulty)."""
    inserted: list[tuple[int, str, int | None, int | None]] = []
    for start in range(0, len(keywords), INSERT_CHUNK):
        end = start + INSERT_CHUNK
        result = await session.execute(
            _INSERT_KEYWORDS,
            {
                "site_id": site_id,
                "source": source,
                "k": list(keywords[start:end]),
                "n": list(norms[start:end]),
                "v": list(volumes[start:end]),
                "d": list(difficulties[start:end]),
                "i": list(intents[start:end]),
                "p": list(parents[start:end]),
                "m": list(metrics[start:end]),
            },
        )
        inserted += [(int(r[0]), str(r[1]), r[2], r[3]) for r in result.all()]
    return inserted


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


async def global_shares(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(GlobalBudgetShare.function, GlobalBudgetShare.percent))
    return {function: int(percent) for function, percent in rows}


async def replace_global_shares(session: AsyncSession, shares: dict[str, int]) -> None:
    """Upsert every function's share (all functions are always given, so nothing stale stays behind)."""
    stmt = insert(GlobalBudgetShare).values([{"function": f, "percent": p} for f, p in shares.items()])
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[GlobalBudgetShare.function],
            set_={"percent": stmt.excluded.percent, "updated_at": func.now()},
        )
    )


def log_line(
    session: AsyncSession, site_id: str, run_id: str | None, stage: int | None, message: str, level: str = "info"
) -> None:
    session.add(ActivityLog(site_id=site_id, run_id=run_id, stage=stage, message=message, level=level))


async def claim_due_config(session: AsyncSession, now: datetime) -> SiteConfigRow | None:
    """The most overdue enabled schedule, locked; one another replica holds is skipped (SKIP LOCKED)."""
    return await session.scalar(
        select(SiteConfigRow)
        .where(SiteConfigRow.is_enabled, SiteConfigRow.next_run_at <= now)
        .order_by(SiteConfigRow.next_run_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
