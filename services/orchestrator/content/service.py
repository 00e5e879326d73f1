"""Content management: paged, filterable lists of a site's keywords, clusters, ideas, tasks, drafts and
images, the image files, and a person's catalogue edits (`content.edits`). Drafts' text edits and
regeneration are the review domain's (`review.curation`); the content router exposes both.

Every method takes the caller's account: a site, draft or image of another account is not found (404).
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.content import edits
from services.orchestrator.content import repository as repo
from services.orchestrator.content.views import (
    ClusterEditOut,
    ClusterKeyword,
    ClusterView,
    DraftSummary,
    IdeaView,
    ImageView,
    KeywordStatusOut,
    KeywordView,
    Paged,
    PublicationView,
    TaskView,
)
from services.orchestrator.errors import NotFoundError
from services.orchestrator.sites import service as sites
from shared.contracts import KEYWORD_METRICS
from shared.db.models import Cluster
from shared.text import normalise

LOW_QUALITY = 70  # the review queue's flag (review.service)


def keyword_view(row: Any) -> KeywordView:
    keyword, status, cluster_name = row
    figures = {k: v for k, v in (keyword.metrics or {}).items() if k in KEYWORD_METRICS}
    return KeywordView(
        id=keyword.id,
        keyword=keyword.keyword,
        volume=keyword.volume,
        difficulty=keyword.difficulty,
        intent=keyword.intent,
        parent_keyword=keyword.parent_keyword,
        status=status,
        cluster_id=keyword.cluster_id,
        cluster_name=cluster_name,
        source=keyword.source,
        created_at=keyword.created_at,
        clustered_at=keyword.clustered_at,
        disabled_at=keyword.disabled_at,
        **figures,
    )


def draft_summary(row: Any) -> DraftSummary:
    draft, decision, publication, status, prompts, images, edited = row
    return DraftSummary(
        id=draft.id,
        task_id=draft.task_id,
        title=draft.title,
        slug=draft.slug,
        word_count=draft.word_count,
        target_words=draft.target_words,
        quality_score=draft.quality_score,
        low_quality=draft.quality_score < LOW_QUALITY,
        status=status,
        decision=decision.decision if decision else None,
        note=decision.note if decision else None,
        decided_at=decision.decided_at if decision else None,
        edited=bool(edited),
        images=int(images),
        image_prompts=int(prompts),
        publication=PublicationView(
            state=publication.state,
            remote_status=publication.remote_status,
            url=publication.url,
            published_at=publication.published_at,
            last_error=publication.last_error,
        )
        if publication
        else None,
        superseded_at=draft.superseded_at,
        run_id=draft.run_id,
        created_at=draft.created_at,
    )


class ContentService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], media_dir: Path) -> None:
        self._sessions = sessions
        self._media = media_dir.resolve()

    # ------------------------------------------------------------------ lists
    async def keywords(
        self,
        account_id: str,
        site_id: str,
        *,
        status: str | None = None,
        cluster_id: int | None = None,
        q: str | None = None,
        intent: str | None = None,
        parent_keyword: str | None = None,
        sort: str = "id",
        page: int = 1,
        size: int = 50,
    ) -> Paged[KeywordView]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total, rows = await repo.keywords(
                session, site_id, status=status, cluster_id=cluster_id, q=_norm(q), intent=intent,
                parent_keyword=parent_keyword, sort=sort, page=page, size=size,
            )  # fmt: skip
        return Paged(total=total, page=page, size=size, items=[keyword_view(r) for r in rows])

    async def clusters(
        self,
        account_id: str,
        site_id: str,
        *,
        q: str | None = None,
        min_size: int = 0,
        sort: str = "id",
        keywords: int = 10,
        page: int = 1,
        size: int = 50,
    ) -> Paged[ClusterView]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total, rows = await repo.clusters(
                session, site_id, q=_norm(q), min_size=min_size, sort=sort, page=page, size=size
            )
            items = await self._cluster_views(session, rows, keywords)
        return Paged(total=total, page=page, size=size, items=items)

    async def cluster(self, account_id: str, site_id: str, cluster_id: int, keywords: int = 1000) -> ClusterView:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            rows = await repo.cluster_rows(session, site_id, [cluster_id])
            if not rows:
                raise NotFoundError(f"cluster {cluster_id} does not exist in site {site_id!r}")
            return (await self._cluster_views(session, rows, keywords))[0]

    @staticmethod
    async def _cluster_views(session: AsyncSession, rows: list[Any], per_cluster: int) -> list[ClusterView]:
        top = await repo.top_keywords(session, [r[0].id for r in rows], per_cluster)
        out = []
        for cluster, ideas in rows:
            assert isinstance(cluster, Cluster)
            out.append(
                ClusterView(
                    id=cluster.id,
                    name=cluster.name,
                    description=cluster.description,
                    intent=cluster.intent,
                    size=cluster.size,
                    keywords=[
                        ClusterKeyword(id=k.id, keyword=k.keyword, volume=k.volume) for k in top.get(cluster.id, [])
                    ],
                    ideas=int(ideas),
                    run_id=cluster.run_id,
                    created_at=cluster.created_at,
                )
            )
        return out

    async def ideas(
        self,
        account_id: str,
        site_id: str,
        *,
        cluster_id: int | None = None,
        has_task: bool | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Paged[IdeaView]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total, rows = await repo.ideas(
                session, site_id, cluster_id=cluster_id, has_task=has_task, page=page, size=size
            )
        items = [
            IdeaView(
                id=idea.id,
                cluster_id=idea.cluster_id,
                cluster_name=cluster_name,
                title=idea.title,
                content_type=idea.content_type,
                intent=idea.intent,
                primary_keyword=idea.primary_keyword,
                secondary_keywords=[str(k) for k in idea.secondary_keywords],
                target_words=idea.target_words,
                has_task=bool(has),
                run_id=idea.run_id,
                created_at=idea.created_at,
            )
            for idea, cluster_name, has in rows
        ]
        return Paged(total=total, page=page, size=size, items=items)

    async def tasks(
        self, account_id: str, site_id: str, *, has_draft: bool | None = None, page: int = 1, size: int = 50
    ) -> Paged[TaskView]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total, rows = await repo.tasks(session, site_id, has_draft=has_draft, page=page, size=size)
        items = [
            TaskView(
                id=t.id,
                idea_id=t.idea_id,
                title=t.title,
                draft_id=draft_id,
                drafts=int(written),
                run_id=t.run_id,
                created_at=t.created_at,
            )
            for t, draft_id, written in rows
        ]
        return Paged(total=total, page=page, size=size, items=items)

    async def drafts(
        self,
        account_id: str,
        site_id: str,
        *,
        status: str | None = None,
        task_id: int | None = None,
        q: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Paged[DraftSummary]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total, rows = await repo.drafts(session, site_id, status=status, task_id=task_id, q=q, page=page, size=size)
        return Paged(total=total, page=page, size=size, items=[draft_summary(r) for r in rows])

    async def images(
        self, account_id: str, site_id: str, *, draft_id: int | None = None, page: int = 1, size: int = 50
    ) -> Paged[ImageView]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total, rows = await repo.images(session, site_id, draft_id=draft_id, page=page, size=size)
        items = [
            ImageView(
                id=image.id,
                draft_id=image.draft_id,
                placement=prompt.placement,
                alt_text=prompt.alt_text,
                caption=prompt.caption,
                mime=image.mime,
                width=image.width,
                height=image.height,
                size_bytes=image.size_bytes,
                checksum_sha256=image.checksum_sha256,
                url=f"/api/v1/images/{image.id}",
                created_at=image.created_at,
            )
            for image, prompt in rows
        ]
        return Paged(total=total, page=page, size=size, items=items)

    async def image_file(self, account_id: str, image_id: int) -> tuple[Path, str]:
        """The image's file under the media directory, and its type; 404 for another account's image, and
        for a stored path outside the media directory (never served, whatever the database says)."""
        async with self._sessions() as session:
            image = await repo.image_of(session, account_id, image_id)
        if image is None:
            raise NotFoundError(f"image {image_id} does not exist")
        path = await asyncio.to_thread(self._inside_media, image.path)
        if path is None:
            raise NotFoundError(f"image {image_id} has no file in the media store")
        return path, image.mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    def _inside_media(self, stored: str) -> Path | None:
        path = Path(stored).resolve()
        return path if path.is_relative_to(self._media) and path.is_file() else None

    # ------------------------------------------------------------------ edits
    async def set_keywords_enabled(
        self, account_id: str, site_id: str, keyword_ids: list[int], enabled: bool
    ) -> KeywordStatusOut:
        async with self._sessions.begin() as session:
            await sites.site_of(session, account_id, site_id)
            changed = await edits.set_enabled(session, site_id, keyword_ids, enabled)
            rows = await repo.keyword_rows(session, site_id, keyword_ids)
            clusters = await repo.cluster_rows(session, site_id, changed.kept + changed.emptied)
            views = await self._cluster_views(session, clusters, 10)
        return KeywordStatusOut(changed=changed.keywords, keywords=[keyword_view(r) for r in rows], clusters=views)

    async def _cluster_edit(self, account_id: str, site_id: str, action: Any) -> ClusterEditOut:
        async with self._sessions.begin() as session:
            await sites.site_of(session, account_id, site_id)
            changed = await action(session)
            rows = await repo.cluster_rows(session, site_id, changed.kept + changed.emptied)
            views = await self._cluster_views(session, rows, 10)
        return ClusterEditOut(clusters=views, removed=changed.removed, emptied=changed.emptied)

    async def rename_cluster(self, account_id: str, site_id: str, cluster_id: int, name: str) -> ClusterEditOut:
        return await self._cluster_edit(account_id, site_id, lambda s: edits.rename(s, site_id, cluster_id, name))

    async def move_keywords(self, account_id: str, site_id: str, cluster_id: int, ids: list[int]) -> ClusterEditOut:
        return await self._cluster_edit(account_id, site_id, lambda s: edits.move(s, site_id, cluster_id, ids))

    async def merge_clusters(self, account_id: str, site_id: str, into_id: int, from_id: int) -> ClusterEditOut:
        return await self._cluster_edit(account_id, site_id, lambda s: edits.merge(s, site_id, into_id, from_id))

    async def split_cluster(
        self, account_id: str, site_id: str, cluster_id: int, ids: list[int], name: str
    ) -> ClusterEditOut:
        async def action(session: AsyncSession) -> edits.Changed:
            changed, _ = await edits.split(session, site_id, cluster_id, ids, name)
            return changed

        return await self._cluster_edit(account_id, site_id, action)


def _norm(q: str | None) -> str | None:
    return normalise(q) if q else None
