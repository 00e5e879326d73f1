"""Content API: lists of a site's keywords, clusters, ideas, tasks, drafts and images; keyword status and
cluster edits (rename, move, merge, split); draft edits, versions and regeneration; image files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import FileResponse

from services.orchestrator.content.service import ContentService
from services.orchestrator.content.views import (
    ClusterEditOut,
    ClusterView,
    DraftEditIn,
    DraftStatus,
    DraftSummary,
    DraftVersionView,
    IdeaView,
    ImageView,
    KeywordSort,
    KeywordStatus,
    KeywordStatusIn,
    KeywordStatusOut,
    KeywordView,
    MergeIn,
    MoveIn,
    Paged,
    RenameIn,
    RestoreIn,
    SplitIn,
    TaskView,
)
from services.orchestrator.review.curation import DraftCuration, Regeneration
from services.orchestrator.review.service import DraftView, ReviewService
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import INT64_MAX, DraftId, Page, SafeLine, SiteId
from shared.contracts import Intent

ClusterId = Annotated[int, Path(ge=1, le=INT64_MAX, description="A cluster id of the site")]
ImageId = Annotated[int, Path(ge=1, le=INT64_MAX, description="An image id of the caller's account")]
Size = Annotated[int, Query(ge=1, le=500, description="Entries per page")]
Search = Annotated[SafeLine | None, Query(max_length=200, description="Text the entries contain")]
OptionalId = Annotated[int | None, Query(ge=1, le=INT64_MAX)]
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}
IMAGE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image file",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)},
    }
}


def build(content: ContentService, review: ReviewService, curation: DraftCuration) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["content"])

    # ------------------------------------------------------------------ lists
    @api.get("/sites/{site_id}/keywords")
    async def list_keywords(
        site_id: SiteId,
        caller: TenantCaller,
        status_: Annotated[KeywordStatus | None, Query(alias="status")] = None,
        cluster_id: OptionalId = None,
        q: Search = None,
        intent: Annotated[Intent | None, Query(description="only keywords with this search intent")] = None,
        parent_keyword: Annotated[SafeLine | None, Query(max_length=200, description="Ahrefs' parent keyword")] = None,
        sort: KeywordSort = "id",
        page: Page = 1,
        size: Size = 50,
    ) -> Paged[KeywordView]:
        """The site's keywords (oldest first unless sorted) with their status and cluster, and the research
        tool's figures (intent, parent keyword, CPC, competition, trend, SERP features, clicks, CTR, position,
        other columns in `extra`)."""
        return await content.keywords(
            caller.tenant, site_id, status=status_, cluster_id=cluster_id, q=q, intent=intent,
            parent_keyword=parent_keyword, sort=sort, page=page, size=size,
        )  # fmt: skip

    @api.patch("/sites/{site_id}/keywords", responses=responses(409))
    async def set_keywords_status(site_id: SiteId, caller: TenantCaller, body: KeywordStatusIn) -> KeywordStatusOut:
        """Disable keywords (never clustered; a clustered one leaves its cluster) or enable them again."""
        return await content.set_keywords_enabled(caller.tenant, site_id, body.keyword_ids, body.enabled)

    @api.get("/sites/{site_id}/clusters")
    async def list_clusters(
        site_id: SiteId,
        caller: TenantCaller,
        q: Search = None,
        min_size: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        sort: Literal["id", "name", "size_desc"] = "id",
        keywords: Annotated[int, Query(ge=0, le=100, description="keywords shown per cluster")] = 10,
        page: Page = 1,
        size: Size = 50,
    ) -> Paged[ClusterView]:
        return await content.clusters(
            caller.tenant, site_id, q=q, min_size=min_size, sort=sort, keywords=keywords, page=page, size=size
        )

    @api.get("/sites/{site_id}/clusters/{cluster_id}")
    async def get_cluster(
        site_id: SiteId,
        cluster_id: ClusterId,
        caller: TenantCaller,
        keywords: Annotated[int, Query(ge=0, le=10_000)] = 1000,
    ) -> ClusterView:
        return await content.cluster(caller.tenant, site_id, cluster_id, keywords)

    @api.get("/sites/{site_id}/ideas")
    async def list_ideas(
        site_id: SiteId,
        caller: TenantCaller,
        cluster_id: OptionalId = None,
        has_task: bool | None = None,
        page: Page = 1,
        size: Size = 50,
    ) -> Paged[IdeaView]:
        return await content.ideas(
            caller.tenant, site_id, cluster_id=cluster_id, has_task=has_task, page=page, size=size
        )

    @api.get("/sites/{site_id}/tasks")
    async def list_tasks(
        site_id: SiteId, caller: TenantCaller, has_draft: bool | None = None, page: Page = 1, size: Size = 50
    ) -> Paged[TaskView]:
        return await content.tasks(caller.tenant, site_id, has_draft=has_draft, page=page, size=size)

    @api.get("/sites/{site_id}/drafts")
    async def list_drafts(
        site_id: SiteId,
        caller: TenantCaller,
        status_: Annotated[DraftStatus | None, Query(alias="status")] = None,
        task_id: OptionalId = None,
        q: Search = None,
        page: Page = 1,
        size: Size = 50,
    ) -> Paged[DraftSummary]:
        """Drafts with their review decision, quality, images and publication (superseded ones included)."""
        return await content.drafts(caller.tenant, site_id, status=status_, task_id=task_id, q=q, page=page, size=size)

    @api.get("/sites/{site_id}/images")
    async def list_images(
        site_id: SiteId, caller: TenantCaller, draft_id: OptionalId = None, page: Page = 1, size: Size = 50
    ) -> Paged[ImageView]:
        return await content.images(caller.tenant, site_id, draft_id=draft_id, page=page, size=size)

    @api.get("/images/{image_id}", response_class=FileResponse, responses=IMAGE_RESPONSE)
    async def image_file(image_id: ImageId, caller: TenantCaller) -> FileResponse:
        """The image file from the media store."""
        path, mime = await content.image_file(caller.tenant, image_id)
        return FileResponse(path, media_type=mime, headers={"Cache-Control": "private, max-age=3600"})

    # ------------------------------------------------------------------ cluster edits
    @api.patch("/sites/{site_id}/clusters/{cluster_id}", responses=responses(409))
    async def rename_cluster(
        site_id: SiteId, cluster_id: ClusterId, caller: TenantCaller, body: RenameIn
    ) -> ClusterEditOut:
        """Rename (names are unique per site, compared normalised)."""
        return await content.rename_cluster(caller.tenant, site_id, cluster_id, body.name)

    @api.post("/sites/{site_id}/clusters/{cluster_id}/keywords", responses=responses(409))
    async def move_keywords(
        site_id: SiteId, cluster_id: ClusterId, caller: TenantCaller, body: MoveIn
    ) -> ClusterEditOut:
        """Move keywords into this cluster (from other clusters, or still pending)."""
        return await content.move_keywords(caller.tenant, site_id, cluster_id, body.keyword_ids)

    @api.post("/sites/{site_id}/clusters/{cluster_id}/merge", responses=responses(409))
    async def merge_clusters(
        site_id: SiteId, cluster_id: ClusterId, caller: TenantCaller, body: MergeIn
    ) -> ClusterEditOut:
        """Merge another cluster of the site into this one (the other is removed, or kept empty for its ideas)."""
        return await content.merge_clusters(caller.tenant, site_id, cluster_id, body.from_cluster_id)

    @api.post(
        "/sites/{site_id}/clusters/{cluster_id}/split", status_code=status.HTTP_201_CREATED, responses=responses(409)
    )
    async def split_cluster(
        site_id: SiteId, cluster_id: ClusterId, caller: TenantCaller, body: SplitIn
    ) -> ClusterEditOut:
        """Move the chosen keywords of this cluster into a new cluster with the given name."""
        return await content.split_cluster(caller.tenant, site_id, cluster_id, body.keyword_ids, body.name)

    # ------------------------------------------------------------------ drafts
    @api.patch("/drafts/{draft_id}", responses=responses(409))
    async def edit_draft(draft_id: DraftId, caller: TenantCaller, body: DraftEditIn) -> DraftView:
        """Edit title, meta and body before the decision; every text is kept (`/versions`)."""
        changes: dict[str, str] = body.model_dump(exclude_none=True)
        await curation.edit(caller.tenant, draft_id, changes, caller.key_id)
        return await review.draft(caller.tenant, draft_id)

    @api.get("/drafts/{draft_id}/versions")
    async def draft_versions(draft_id: DraftId, caller: TenantCaller) -> list[DraftVersionView]:
        """Every text the draft has had, oldest first; version 1 is the model's original."""
        return [
            DraftVersionView(
                version=getattr(row, "version", 1),
                source=source,
                title=row.title,
                meta_title=row.meta_title,
                meta_description=row.meta_description,
                body_markdown=row.body_markdown,
                key_id=getattr(row, "key_id", None),
                created_at=row.created_at,
            )
            for row, source in await curation.versions(caller.tenant, draft_id)
        ]

    @api.post("/drafts/{draft_id}/restore", responses=responses(409))
    async def restore_draft(draft_id: DraftId, caller: TenantCaller, body: RestoreIn) -> DraftView:
        """Make an earlier version the draft's text again (1: the model's original), as a new version."""
        await curation.restore(caller.tenant, draft_id, body.version, caller.key_id)
        return await review.draft(caller.tenant, draft_id)

    @api.post("/drafts/{draft_id}/regenerate", status_code=status.HTTP_201_CREATED, responses=responses(402, 409))
    async def regenerate_draft(draft_id: DraftId, caller: TenantCaller) -> Regeneration:
        """Regenerate a rejected draft: a targeted run writes its task's next draft, charged like any run."""
        return await curation.regenerate(caller.tenant, draft_id)

    return [api]
