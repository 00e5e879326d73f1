"""Status sync: every published post is re-read from WordPress every `publisher_sync_seconds`.

Its remote status (publish, future, draft, pending, private, trash) and URL go onto the publication; a post
WordPress no longer has (404) is marked `deleted` and left alone from then on (never re-created). Each change
is logged and announced as PublicationStatusChanged through the outbox, in the transaction that stores it.
Replicas share the work: a due row is claimed (its next look pushed ahead) with SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.publisher import repository as repo
from services.publisher.service import ALL_STATUSES, ClientFactory, remote_status
from services.publisher.wordpress import WordPressError
from shared.contracts import PublicationStatusChanged, RemoteStatus
from shared.delivery import Outbox
from shared.secrets import SecretError, reveal
from shared.settings import Settings
from shared.topics import PUBLICATION_STATUS

log = logging.getLogger(__name__)
BATCH = 100  # posts per claim; also the REST API's largest page


class StatusSync:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        settings: Settings,
        client_factory: ClientFactory,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._settings = settings
        self._client_factory = client_factory
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def _interval(self) -> timedelta:
        return timedelta(seconds=self._settings.publisher_sync_seconds)

    async def start(self) -> None:  # async: FastStream runs plain functions in a thread, without a loop
        self._task = asyncio.create_task(self._run(), name="publisher-status-sync")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except TimeoutError:
                self._task.cancel()

    async def _run(self) -> None:
        # Looking for due rows is one indexed query: often enough that a short interval is honoured.
        poll = min(self._settings.publisher_sync_seconds, 5.0)
        while not self._stopping.is_set():
            try:
                while await self.sync_due() == BATCH and not self._stopping.is_set():
                    pass  # a full batch: more may be due
            except Exception:  # a database hiccup: the rows stay due, try again next round
                log.exception("status sync failed; retrying in %.0fs", poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=poll)

    async def sync_due(self) -> int:
        """One round: claim the due posts, read them from their sites, store and announce changes."""
        async with self._sessions.begin() as session:
            due = await repo.claim_due(session, BATCH, self._interval)
        by_site: dict[str, list[repo.DuePost]] = defaultdict(list)
        for post in due:
            by_site[post.site_id].append(post)
        for site_id, posts in by_site.items():
            try:
                await self._sync_site(site_id, posts)
            except (WordPressError, SecretError) as exc:  # this site only; it is looked at again next interval
                log.warning("status sync of site %s skipped: %s", site_id, exc)
        return len(due)

    async def _sync_site(self, site_id: str, posts: list[repo.DuePost]) -> None:
        async with self._sessions() as session:
            conn = await repo.connection(session, site_id)
        if conn is None:
            log.warning("status sync of site %s skipped: it has no WordPress connection any more", site_id)
            return
        password = reveal(conn.app_password_encrypted, conn.app_password_ref, self._settings.secret_key)
        async with self._client_factory(conn.base_url, conn.username, password) as wp:
            await wp.discover()
            ids = ",".join(str(p.remote_post_id) for p in posts)
            found = {
                int(p["id"]): p
                for p in await wp.find_posts({"include": ids, "status": ALL_STATUSES, "per_page": BATCH})
            }
            for post in posts:
                remote = found.get(post.remote_post_id)
                if remote is None:  # not listed: deleted for good, or a status we do not list; ask for it alone
                    remote = await wp.get_post(post.remote_post_id)
                status = RemoteStatus.DELETED if remote is None else remote_status(remote.get("status"))
                if status is None:
                    continue
                url = str(remote.get("link") or "") or None if remote is not None else None
                await self._store(post, status, url)

    async def _store(self, post: repo.DuePost, status: RemoteStatus, url: str | None) -> None:
        async with self._sessions.begin() as session:
            previous = await repo.apply_remote(session, post.publication_id, status, url)
            if previous is None:
                return
            before_status, before_url = previous
            event = PublicationStatusChanged(
                account_id=post.account_id,
                site_id=post.site_id,
                draft_id=post.draft_id,
                remote_post_id=post.remote_post_id,
                previous_status=remote_status(before_status),
                remote_status=status,
                previous_url=before_url,
                url=url if status is not RemoteStatus.DELETED else before_url,
            )
            self._outbox.add(session, PUBLICATION_STATUS, post.site_id, event)
        self._outbox.committed()
        log.info(
            "draft %s: WordPress post %s is now %s (was %s)%s",
            post.draft_id,
            post.remote_post_id,
            status.value,
            before_status,
            f", at {url}" if url and url != before_url else "",
        )
