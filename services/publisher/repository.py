"""SQL of the publisher: it owns `publications` and `publication_media`, and reads drafts, images, the idea and
cluster behind a draft (for categories and tags) and the site's `wordpress_connections` row."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import PublicationState, PublishCommand, RemoteStatus
from shared.db.models import (
    Cluster,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    Publication,
    PublicationMedia,
    Site,
    WordPressConnection,
    WriterTask,
)

# Two-key advisory locks have their own key space; this first key is the publisher's.
_LOCK_SPACE = 1409


@dataclass(frozen=True)
class DraftImage:
    image_id: int
    position: int
    placement: str
    alt_text: str
    caption: str
    path: str
    mime: str
    width: int
    height: int


@dataclass(frozen=True)
class PublishContext:
    """Everything one publish needs, read in one transaction before any remote call."""

    draft: Draft
    connection: WordPressConnection
    images: list[DraftImage]
    cluster_name: str | None
    keywords: list[str] = field(default_factory=list)


async def load_context(session: AsyncSession, cmd: PublishCommand) -> PublishContext | str:
    """The context, or why there is none (the message a failed result carries)."""
    draft = await session.get(Draft, cmd.draft_id)
    account = await session.scalar(select(Site.account_id).where(Site.id == cmd.site_id))
    # Another account's (or site's) draft is simply not found.
    if draft is None or draft.site_id != cmd.site_id or account != cmd.account_id:
        return f"draft {cmd.draft_id} not found for site {cmd.site_id}"
    connection = await session.get(WordPressConnection, cmd.site_id)
    if connection is None:
        return f"site {cmd.site_id} has no WordPress connection"
    rows = await session.execute(
        select(Image, ImagePrompt)
        .join(ImagePrompt, ImagePrompt.id == Image.prompt_id)
        .where(Image.draft_id == draft.id)
        .order_by(ImagePrompt.position)
    )
    images = [
        DraftImage(i.id, p.position, p.placement, p.alt_text, p.caption, i.path, i.mime, i.width, i.height)
        for i, p in rows.all()
    ]
    idea = (
        await session.execute(
            select(Idea.primary_keyword, Idea.secondary_keywords, Cluster.name)
            .join(WriterTask, WriterTask.idea_id == Idea.id)
            .join(Cluster, Cluster.id == Idea.cluster_id)
            .where(WriterTask.id == draft.task_id)
        )
    ).first()
    keywords = [idea.primary_keyword, *(str(k) for k in idea.secondary_keywords or [])] if idea else []
    return PublishContext(draft, connection, images, idea.name if idea else None, keywords)


@contextlib.asynccontextmanager
async def draft_lock(sessions: async_sessionmaker[AsyncSession], draft_id: int) -> AsyncIterator[bool]:
    """Yields True when this process may work on the draft's post now; a second delivery of the same draft
    (a rebalance, two commands) gets False and waits its turn. A transaction lock held by an otherwise idle
    transaction on its own connection: released at the end, and by PostgreSQL itself if we crash."""
    key = draft_id % 2_147_483_647
    async with sessions() as session, session.begin():
        yield bool(await session.scalar(select(func.pg_try_advisory_xact_lock(_LOCK_SPACE, key))))


async def start(session: AsyncSession, cmd: PublishCommand) -> Publication:
    """The draft's publication, now `publishing` (unless it is already published: then as it is)."""
    await session.execute(
        insert(Publication)
        .values(draft_id=cmd.draft_id, site_id=cmd.site_id, state=PublicationState.SCHEDULED.value)
        .on_conflict_do_nothing(index_elements=[Publication.draft_id])
    )
    mine = select(Publication).where(Publication.draft_id == cmd.draft_id).execution_options(populate_existing=True)
    pub = await session.scalar(mine.with_for_update())
    if pub is not None and pub.state != PublicationState.PUBLISHED:
        await session.execute(
            update(Publication)
            .where(Publication.id == pub.id)
            .values(
                state=PublicationState.PUBLISHING.value,
                attempts=Publication.attempts + 1,
                command_id=cmd.message_id,
                run_id=cmd.run_id,
                updated_at=func.now(),
            )
        )
        pub = await session.scalar(mine)
    assert pub is not None
    return pub


async def recorded_media(session: AsyncSession, publication_id: int) -> dict[int, tuple[int, str]]:
    rows = await session.execute(
        select(PublicationMedia.image_id, PublicationMedia.remote_media_id, PublicationMedia.source_url).where(
            PublicationMedia.publication_id == publication_id
        )
    )
    return {image_id: (media_id, url) for image_id, media_id, url in rows.all()}


async def record_media(session: AsyncSession, publication_id: int, image_id: int, media_id: int, url: str) -> None:
    await session.execute(
        insert(PublicationMedia)
        .values(publication_id=publication_id, image_id=image_id, remote_media_id=media_id, source_url=url)
        .on_conflict_do_nothing()
    )


async def record_post(session: AsyncSession, publication_id: int, post_id: int) -> None:
    await session.execute(
        update(Publication)
        .where(Publication.id == publication_id)
        .values(remote_post_id=post_id, updated_at=func.now())
    )


async def defer(session: AsyncSession, publication_id: int, reason: str) -> None:
    """Back to `scheduled`: the command is retried after a back-off (the site answered 503, say)."""
    await session.execute(
        update(Publication)
        .where(Publication.id == publication_id)
        .values(
            state=PublicationState.SCHEDULED.value, last_error=f"will retry: {reason}"[:2000], updated_at=func.now()
        )
    )


async def finish(
    session: AsyncSession,
    draft_id: int,
    *,
    state: PublicationState,
    remote_post_id: int | None,
    remote_status: RemoteStatus | None,
    url: str | None,
    error: str | None,
    notes: list[str],
    next_sync_at: datetime,
) -> None:
    values: dict[str, Any] = {"state": state.value, "last_error": error, "notes": notes, "updated_at": func.now()}
    if remote_post_id is not None:
        values |= {"remote_post_id": remote_post_id, "remote_status": remote_status, "url": url}
    if state is PublicationState.PUBLISHED:
        published_at = func.coalesce(Publication.published_at, func.now())
        values |= {"published_at": published_at, "synced_at": func.now(), "next_sync_at": next_sync_at}
    await session.execute(update(Publication).where(Publication.draft_id == draft_id).values(**values))


# ---------------------------------------------------------------------- status sync
@dataclass(frozen=True)
class DuePost:
    publication_id: int
    site_id: str
    account_id: str
    draft_id: int
    remote_post_id: int


async def claim_due(session: AsyncSession, limit: int, interval: timedelta) -> list[DuePost]:
    """Published posts due for a look, pushed `interval` ahead at once so other replicas skip them."""
    due = (
        select(Publication.id)
        .where(
            Publication.state == PublicationState.PUBLISHED.value,
            Publication.remote_status.is_distinct_from(RemoteStatus.DELETED.value),
            Publication.remote_post_id.is_not(None),
            Publication.next_sync_at <= func.now(),
        )
        .order_by(Publication.next_sync_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(Publication)
        .where(Publication.id.in_(due.scalar_subquery()))
        .values(next_sync_at=func.now() + interval)
        .returning(Publication.id, Publication.site_id, Publication.draft_id, Publication.remote_post_id)
    )
    claimed = rows.all()
    sites = await session.execute(select(Site.id, Site.account_id).where(Site.id.in_({r.site_id for r in claimed})))
    accounts: dict[str, str] = dict(sites.all())
    return [
        DuePost(r.id, r.site_id, accounts.get(r.site_id, ""), r.draft_id, int(r.remote_post_id or 0)) for r in claimed
    ]


async def connection(session: AsyncSession, site_id: str) -> WordPressConnection | None:
    return await session.get(WordPressConnection, site_id)


async def apply_remote(
    session: AsyncSession, publication_id: int, status: RemoteStatus, url: str | None
) -> tuple[str | None, str | None] | None:
    """Store what WordPress says now; returns the previous (status, url) when either changed, else None."""
    pub = await session.get(Publication, publication_id, with_for_update=True, populate_existing=True)
    if pub is None:
        return None
    previous = (pub.remote_status, pub.url)
    if status is RemoteStatus.DELETED:
        url = pub.url  # a deleted post keeps the address it had, for the record
    changed = (status.value, url) != previous
    values: dict[str, Any] = {"synced_at": func.now()}
    if changed:
        values |= {"remote_status": status.value, "url": url, "updated_at": func.now()}
    await session.execute(update(Publication).where(Publication.id == publication_id).values(**values))
    return previous if changed else None
