"""SQL of the publishing domain: publishing settings, the publishing schedule, WordPress connections.

Queries that read a caller's rows take the caller's account and filter by it; the ticker and the result
consumer act on ids this orchestrator issued itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.publishing.settings import PublishingSettings
from shared.db.models import (
    Draft,
    PublishingSettingsRow,
    ReviewDecision,
    ScheduledPublication,
    Site,
    WordPressConnection,
)

# States that hold their instant: a new slot must keep clear of them.
BOOKED_STATES = ("scheduled", "publishing", "published")


async def settings_row(session: AsyncSession, site_id: str, lock: bool = False) -> PublishingSettingsRow:
    """The site's settings row, created with the defaults on first use; `lock` takes the site's schedule lock."""
    await session.execute(
        insert(PublishingSettingsRow)
        .values(site_id=site_id, settings=PublishingSettings().model_dump(mode="json"))
        .on_conflict_do_nothing()
    )
    stmt = select(PublishingSettingsRow).where(PublishingSettingsRow.site_id == site_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await session.scalar(stmt)
    assert row is not None
    return row


async def entry(session: AsyncSession, draft_id: int, lock: bool = False) -> ScheduledPublication | None:
    return await session.get(ScheduledPublication, draft_id, with_for_update=lock or None, populate_existing=lock)


async def entries(session: AsyncSession, draft_ids: Sequence[int]) -> dict[int, ScheduledPublication]:
    rows = await session.scalars(
        select(ScheduledPublication)
        .where(ScheduledPublication.draft_id.in_(draft_ids))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {r.draft_id: r for r in rows}


async def booked_instants(
    session: AsyncSession, site_id: str, since: datetime, leave_out: int | None = None
) -> list[datetime]:
    stmt = select(ScheduledPublication.scheduled_publish_at).where(
        ScheduledPublication.site_id == site_id,
        ScheduledPublication.state.in_(BOOKED_STATES),
        ScheduledPublication.scheduled_publish_at >= since,
    )
    if leave_out is not None:
        stmt = stmt.where(ScheduledPublication.draft_id != leave_out)
    return [r for r in await session.scalars(stmt) if r is not None]


async def queued(session: AsyncSession, site_id: str, leave_out: int | None = None) -> int:
    stmt = select(func.count()).where(
        ScheduledPublication.site_id == site_id, ScheduledPublication.state == "scheduled"
    )
    if leave_out is not None:
        stmt = stmt.where(ScheduledPublication.draft_id != leave_out)
    return int(await session.scalar(stmt) or 0)


async def holder_of(session: AsyncSession, site_id: str, at: datetime) -> int | None:
    """The draft scheduled at exactly `at` on the site, if any."""
    return await session.scalar(
        select(ScheduledPublication.draft_id).where(
            ScheduledPublication.site_id == site_id,
            ScheduledPublication.state == "scheduled",
            ScheduledPublication.scheduled_publish_at == at,
        )
    )


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[tuple[ScheduledPublication, str]]:
    """Due drafts with their account, locked; rows another replica is handing over are skipped (SKIP LOCKED)."""
    rows = await session.execute(
        select(ScheduledPublication, Site.account_id)
        .join(Site, Site.id == ScheduledPublication.site_id)
        .where(ScheduledPublication.state == "scheduled", ScheduledPublication.scheduled_publish_at <= now)
        .order_by(ScheduledPublication.scheduled_publish_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=ScheduledPublication)
        .execution_options(populate_existing=True)
    )
    return [(row, account_id) for row, account_id in rows.all()]


async def sites_waiting(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    """Sites with drafts whose next try for a slot is due."""
    rows = await session.scalars(
        select(ScheduledPublication.site_id)
        .where(ScheduledPublication.state == "unscheduled", ScheduledPublication.retry_at <= now)
        .group_by(ScheduledPublication.site_id)
        .order_by(func.min(ScheduledPublication.retry_at))
        .limit(limit)
    )
    return list(rows)


async def waiting(session: AsyncSession, site_id: str) -> list[ScheduledPublication]:
    """The site's drafts waiting to be tried again for a slot, oldest first, locked (SKIP LOCKED)."""
    rows = await session.scalars(
        select(ScheduledPublication)
        .where(
            ScheduledPublication.site_id == site_id,
            ScheduledPublication.state == "unscheduled",
            ScheduledPublication.retry_at.is_not(None),
        )
        .order_by(ScheduledPublication.draft_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def retry_now(session: AsyncSession, site_id: str, now: datetime, codes: Sequence[str]) -> None:
    """Bring the next try of the site's drafts waiting for these reasons forward (settings changed, a
    connection was made, a slot was handed over). Drafts a person unscheduled are theirs: never touched."""
    await session.execute(
        update(ScheduledPublication)
        .where(
            ScheduledPublication.site_id == site_id,
            ScheduledPublication.state == "unscheduled",
            ScheduledPublication.reason_code.in_(codes),
        )
        .values(retry_at=now, retries=0)
    )


async def queue_rows(
    session: AsyncSession, account_id: str, site_id: str, states: Sequence[str], limit: int
) -> list[tuple[ScheduledPublication, str]]:
    """The site's schedule entries with their drafts' titles: by slot (unscheduled last), then draft id."""
    stmt = (
        select(ScheduledPublication, Draft.title)
        .join(Draft, Draft.id == ScheduledPublication.draft_id)
        .join(Site, Site.id == ScheduledPublication.site_id)
        .where(ScheduledPublication.site_id == site_id, Site.account_id == account_id)
        .order_by(ScheduledPublication.scheduled_publish_at.asc().nulls_last(), ScheduledPublication.draft_id)
        .limit(limit)
    )
    if states:
        stmt = stmt.where(ScheduledPublication.state.in_(states))
    return [(row, title) for row, title in (await session.execute(stmt)).all()]


async def approved_draft(session: AsyncSession, account_id: str, draft_id: int) -> tuple[Draft, str | None] | None:
    """The caller's draft with its review decision (None when undecided); another account's is not found."""
    row = (
        await session.execute(
            select(Draft, ReviewDecision.decision)
            .join(Site, Site.id == Draft.site_id)
            .outerjoin(ReviewDecision, ReviewDecision.draft_id == Draft.id)
            .where(Draft.id == draft_id, Site.account_id == account_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


# ---------------------------------------------------------------------- WordPress connections
async def connection(session: AsyncSession, site_id: str, lock: bool = False) -> WordPressConnection | None:
    return await session.get(WordPressConnection, site_id, with_for_update=lock or None, populate_existing=lock)


async def has_connection(session: AsyncSession, site_id: str) -> bool:
    return bool(await session.scalar(select(func.count()).where(WordPressConnection.site_id == site_id)))


async def delete_connection(session: AsyncSession, site_id: str) -> bool:
    result = await session.execute(
        delete(WordPressConnection).where(WordPressConnection.site_id == site_id).returning(WordPressConnection.site_id)
    )
    return result.first() is not None
