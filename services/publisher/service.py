"""Publishing one draft to its site's WordPress, exactly once in effect (no Kafka here).

1. A command already in the inbox is a duplicate: skipped (its result is already in the outbox).
2. One worker per draft at a time (an advisory lock); the publication goes `publishing` (committed).
3. The remote side is looked at BEFORE anything is created: the post by its marker (post meta
   `contentline_key`, written in the same request that creates the post) or the id an earlier attempt stored;
   each image likewise. So a crash between WordPress creating something and our commit never duplicates it.
4. Images are uploaded (alt text, caption, marker) and recorded one by one; terms found or created; the post
   created (or the earlier one updated) with title, slug, sanitised body with the images, excerpt, terms,
   featured image and SEO fields where the site exposes them.
5. One transaction: claim the inbox, store the outcome on the publication, add the PublishResult to the outbox.

Transient failures (timeouts, 429, 5xx) are retried inside the client; when those retries are used up the
publication goes back to `scheduled` and PublishDeferred asks the handler to redeliver after a back-off
(bounded: see shared.consume.bounded). Permanent ones fail the draft with WordPress's own message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay

from services.publisher import content
from services.publisher import repository as repo
from services.publisher.connection import may_not_publish
from services.publisher.wordpress import RetryPolicy, WordPressClient, WordPressError, backoff
from shared.contracts import CategoryMapping, PublicationState, PublishCommand, PublishResult, RemoteStatus, TagMapping
from shared.db.models import Publication, WordPressConnection
from shared.delivery import Outbox, claim_inbox, processed
from shared.secrets import SecretError, reveal
from shared.settings import Settings
from shared.topics import PUBLISH_RESULTS

log = logging.getLogger(__name__)

# Every status our own posts can have; `any` in the REST API leaves out the trash, which we must see.
ALL_STATUSES = "publish,future,draft,pending,private,trash"


class PublishDeferred(Exception):
    """A transient failure outlasted the client's retries: try the command again later."""


class PermanentFailure(Exception):
    """This draft cannot be published as things are (the reason says why)."""


class ClientFactory(Protocol):
    def __call__(self, base_url: str, username: str, password: str) -> WordPressClient: ...


@dataclass
class Outcome:
    state: PublicationState
    reason: str = ""
    permanent: bool = True
    remote_post_id: int | None = None
    url: str | None = None
    remote_status: RemoteStatus | None = None
    already_published: bool = False
    media_uploaded: int = 0
    media_reused: int = 0
    notes: list[str] = field(default_factory=list)


def remote_status(value: object) -> RemoteStatus | None:
    try:
        return RemoteStatus(str(value))
    except ValueError:
        return None


class PublisherService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        settings: Settings,
        worker: str = "publisher",
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._settings = settings
        self._worker = worker
        self._policy = RetryPolicy(settings.wordpress_max_attempts, settings.wordpress_retry_budget_seconds)
        self._client_factory = client_factory or self.client

    def client(self, base_url: str, username: str, password: str) -> WordPressClient:
        """A client with the configured timeout and retry policy (the status sync uses it too)."""
        return WordPressClient(
            base_url, username, password, timeout=self._settings.wordpress_timeout_seconds, policy=self._policy
        )

    # ------------------------------------------------------------------ entry points (called by the handler)
    async def handle(self, cmd: PublishCommand) -> PublishResult | None:
        """Publish the command's draft exactly once in effect; None for a duplicate delivery."""
        async with self._sessions() as session:
            if await processed(session, self._worker, cmd.message_id) is not None:
                log.info("duplicate publish command %s (draft %s) skipped", cmd.message_id, cmd.draft_id)
                return None
        started = time.perf_counter()
        outcome = await self._attempt(cmd)
        return await self._commit(cmd, outcome, started)

    async def give_up(self, cmd: PublishCommand, reason: str) -> PublishResult | None:
        """The command failed too often (see shared.consume.bounded): the draft fails, the reason recorded."""
        async with self._sessions() as session:
            pub = await session.scalar(select(Publication).where(Publication.draft_id == cmd.draft_id))
        if pub is not None and pub.state == PublicationState.PUBLISHED:  # another command got there: keep it
            outcome = self._already(pub)
        else:
            outcome = Outcome(PublicationState.FAILED, reason=f"publisher gave up: {reason}", permanent=False)
        return await self._commit(cmd, outcome, time.perf_counter())

    @staticmethod
    def _already(pub: Publication) -> Outcome:
        return Outcome(
            PublicationState.PUBLISHED,
            remote_post_id=pub.remote_post_id,
            url=pub.url,
            remote_status=remote_status(pub.remote_status),
            already_published=True,
            notes=list(pub.notes or []),
        )

    async def _commit(self, cmd: PublishCommand, outcome: Outcome, started: float) -> PublishResult | None:
        async with self._sessions.begin() as session:
            if not await claim_inbox(session, self._worker, cmd.message_id):
                await session.rollback()  # a concurrent delivery committed first; its result stands
                return None
            await repo.finish(
                session,
                cmd.draft_id,
                state=outcome.state,
                remote_post_id=outcome.remote_post_id,
                remote_status=outcome.remote_status,
                url=outcome.url,
                error=outcome.reason or None,
                notes=outcome.notes,
                next_sync_at=datetime.now(UTC) + timedelta(seconds=self._settings.publisher_sync_seconds),
            )
            result = PublishResult(
                command_id=cmd.message_id,
                account_id=cmd.account_id,
                site_id=cmd.site_id,
                draft_id=cmd.draft_id,
                run_id=cmd.run_id,
                attempt=cmd.attempt,
                state=outcome.state,
                remote_post_id=outcome.remote_post_id,
                url=outcome.url,
                remote_status=outcome.remote_status,
                reason=outcome.reason,
                permanent=outcome.permanent,
                already_published=outcome.already_published,
                media_uploaded=outcome.media_uploaded,
                media_reused=outcome.media_reused,
                notes=outcome.notes,
                seconds=round(time.perf_counter() - started, 3),
                worker=self._worker,
            )
            self._outbox.add(session, PUBLISH_RESULTS, cmd.site_id, result)
        self._outbox.committed()
        if outcome.state is PublicationState.PUBLISHED:
            log.info("draft %s published as post %s (%s)", cmd.draft_id, outcome.remote_post_id, outcome.url)
        else:
            log.warning("draft %s not published: %s", cmd.draft_id, outcome.reason)
        return result

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self, cmd: PublishCommand) -> Outcome:
        async with repo.draft_lock(self._sessions, cmd.draft_id) as locked:
            if not locked:
                raise PublishDeferred(f"draft {cmd.draft_id} is being published by another delivery right now")
            async with self._sessions.begin() as session:
                ctx = await repo.load_context(session, cmd)
                if isinstance(ctx, str):
                    return Outcome(PublicationState.FAILED, reason=ctx)
                pub = await repo.start(session, cmd)
            if pub.state == PublicationState.PUBLISHED:
                return self._already(pub)
            try:
                return await self._publish(ctx, pub, cmd)
            except WordPressError as exc:
                if not exc.transient:
                    return Outcome(PublicationState.FAILED, reason=exc.reason)
                async with self._sessions.begin() as session:
                    await repo.defer(session, pub.id, exc.reason)
                raise PublishDeferred(exc.reason) from exc
            except (PermanentFailure, SecretError) as exc:
                return Outcome(PublicationState.FAILED, reason=str(exc))

    async def _publish(self, ctx: repo.PublishContext, pub: Publication, cmd: PublishCommand) -> Outcome:
        conn, draft = ctx.connection, ctx.draft
        password = reveal(conn.app_password_encrypted, conn.app_password_ref, self._settings.secret_key)
        async with self._client_factory(conn.base_url, conn.username, password) as wp:
            await wp.discover()
            meta_keys = await wp.post_meta_keys()
            outcome = Outcome(PublicationState.PUBLISHED)
            has_marker = content.MARKER_KEY in meta_keys
            if not has_marker:
                outcome.notes.append(
                    "the contentline mu-plugin is not installed on the site: earlier posts are found by slug only"
                )
            me = await wp.me()
            refusal = may_not_publish(conn.username, me)
            if refusal:
                raise PermanentFailure(refusal)
            find_post = self._post_finder(wp, ctx, pub, has_marker, int(me["id"]))
            existing = await find_post()
            if existing is not None and existing.get("status") == RemoteStatus.TRASH:
                raise PermanentFailure(
                    f"post {existing['id']} of this draft is in the WordPress trash; it is not published again "
                    "(restore it in WordPress, or delete it for good to publish anew)"
                )

            category_mapping, tag_mapping = self._mappings(conn)
            placed = await self._media(wp, ctx, pub, has_marker, outcome)
            categories = await self._term_ids(
                wp, "categories", content.categories_for(category_mapping, ctx.cluster_name)
            )
            tags = await self._term_ids(wp, "tags", content.tags_for(tag_mapping, ctx.keywords))
            seo, seo_note = content.seo_meta(meta_keys, draft.meta_title, draft.meta_description)
            if seo_note:
                outcome.notes.append(seo_note)
            body = content.place_images(
                content.rewrite_image_sources(content.sanitise(draft.body_html), {i.path: p.url for i, p in placed}),
                [p for _, p in placed],
            )
            featured = next((p for _, p in placed if p.placement == "featured"), placed[0][1] if placed else None)
            payload: dict[str, Any] = {
                "title": draft.title,
                "slug": draft.slug,
                "content": body,
                "excerpt": draft.meta_description,
                "status": cmd.post_status or conn.default_post_status,
                "categories": categories,
                "tags": tags,
                "featured_media": featured.media_id if featured else 0,
                "meta": seo,
            }
            if has_marker:
                payload["meta"] = {content.MARKER_KEY: content.draft_marker(cmd.site_id, draft.id), **seo}
            if existing is not None:
                post = await wp.update_post(int(existing["id"]), payload)
            else:
                post, created = await self._find_or_create(find_post, lambda: wp.create_post(payload))
                if not created:  # an earlier attempt's create went through after all: bring it up to date
                    post = await wp.update_post(int(post["id"]), payload)
            async with self._sessions.begin() as session:
                await repo.record_post(session, pub.id, int(post["id"]))
        outcome.remote_post_id, outcome.url = int(post["id"]), str(post.get("link") or "")
        outcome.remote_status = remote_status(post.get("status"))
        return outcome

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _mappings(conn: WordPressConnection) -> tuple[CategoryMapping, TagMapping]:
        try:
            return CategoryMapping(**conn.category_mapping), TagMapping(**conn.tag_mapping)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise PermanentFailure(f"the site's category or tag mapping is invalid: {problems}") from exc

    def _post_finder(
        self, wp: WordPressClient, ctx: repo.PublishContext, pub: Publication, has_marker: bool, my_id: int
    ) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def find() -> dict[str, Any] | None:
            if pub.remote_post_id is not None:
                post = await wp.get_post(pub.remote_post_id)
                if post is None:
                    raise PermanentFailure(
                        f"post {pub.remote_post_id} of this draft was deleted in WordPress; it is not created again"
                    )
                return post
            if has_marker:
                marker = content.draft_marker(ctx.draft.site_id, ctx.draft.id)
                found = await wp.find_posts({content.MARKER_KEY: marker, "status": ALL_STATUSES, "per_page": 2})
            else:  # weaker: our user's post with this slug and title
                found = [
                    p
                    for p in await wp.find_posts({"slug": ctx.draft.slug, "status": ALL_STATUSES, "author": my_id})
                    if (p.get("title") or {}).get("raw") == ctx.draft.title
                ]
            return found[0] if found else None

        return find

    async def _find_or_create(
        self,
        find: Callable[[], Awaitable[dict[str, Any] | None]],
        create: Callable[[], Awaitable[dict[str, Any]]],
    ) -> tuple[dict[str, Any], bool]:
        """Create unless it exists; a create that failed transiently may have happened, so look again first."""
        first = True
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, WordPressError) and e.transient),
            stop=stop_after_attempt(self._policy.max_attempts) | stop_after_delay(self._policy.budget_seconds),
            wait=backoff(self._policy),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if not first:
                    found = await find()
                    if found is not None:
                        return found, False
                first = False
                return await create(), True
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _media(
        self, wp: WordPressClient, ctx: repo.PublishContext, pub: Publication, has_marker: bool, outcome: Outcome
    ) -> list[tuple[repo.DraftImage, content.PlacedImage]]:
        async with self._sessions() as session:
            recorded = await repo.recorded_media(session, pub.id)
        placed = []
        for image in ctx.images:
            if image.image_id in recorded:
                media_id, url = recorded[image.image_id]
                outcome.media_reused += 1
            else:
                media_id, url = await self._upload(wp, ctx, image, has_marker, outcome)
                async with self._sessions.begin() as session:
                    await repo.record_media(session, pub.id, image.image_id, media_id, url)
            placed.append(
                (
                    image,
                    content.PlacedImage(
                        image.placement, media_id, url, image.alt_text, image.caption, image.width, image.height
                    ),
                )
            )
        return placed

    async def _upload(
        self, wp: WordPressClient, ctx: repo.PublishContext, image: repo.DraftImage, has_marker: bool, outcome: Outcome
    ) -> tuple[int, str]:
        marker = content.image_marker(ctx.draft.site_id, image.image_id)
        slug = f"{ctx.draft.slug}-image-{image.image_id}"[:200]

        async def find() -> dict[str, Any] | None:
            params = {content.MARKER_KEY: marker} if has_marker else {"slug": slug}
            found = await wp.find_media({**params, "per_page": 2})
            return found[0] if found else None

        fields = {"alt_text": image.alt_text, "caption": image.caption, "title": image.alt_text or ctx.draft.title}

        async def create() -> dict[str, Any]:
            data = await asyncio.to_thread(self._read_image, image.path)
            form = {**fields, "slug": slug}
            if has_marker:
                form[f"meta[{content.MARKER_KEY}]"] = marker
            suffix = image.mime.rsplit("/", 1)[-1].replace("jpeg", "jpg")
            return await wp.upload_media(data, f"{slug}.{suffix}", image.mime, form)

        media = await find()  # an attempt that died before recording its upload
        if media is None:
            media, created = await self._find_or_create(find, create)
        else:
            created = False
        if created:
            outcome.media_uploaded += 1
        else:  # adopted: make sure its alt text and caption are ours
            outcome.media_reused += 1
            await wp.update_media(int(media["id"]), fields)
        return int(media["id"]), str(media["source_url"])

    def _read_image(self, path: str) -> bytes:
        candidate = Path(path)
        if not candidate.is_absolute() and not candidate.exists():
            candidate = self._settings.media_dir / candidate
        try:
            return candidate.read_bytes()
        except OSError as exc:
            raise PermanentFailure(f"image file {path} cannot be read from the media store: {exc.strerror}") from exc

    @staticmethod
    async def _term_ids(wp: WordPressClient, taxonomy: str, names: list[str]) -> list[int]:
        ids = []
        for name in names:
            wanted = content.term_key(name)
            found = [t for t in await wp.find_terms(taxonomy, name) if content.term_key(str(t.get("name"))) == wanted]
            ids.append(int(found[0]["id"]) if found else await wp.create_term(taxonomy, name))
        return list(dict.fromkeys(ids))
