"""Export API: a draft, or every approved draft of a site, as a zip (Markdown + HTML + images + index)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.orchestrator.exports.service import ExportService
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import DraftId, SiteId

ZIP_SCHEMA = {"type": "string", "format": "binary"}
ZIP: dict[int | str, dict[str, Any]] = {
    200: {"description": "A zip archive, streamed", "content": {"application/zip": {"schema": ZIP_SCHEMA}}}
}


def _zip(name: str, chunks: Any) -> StreamingResponse:
    return StreamingResponse(
        chunks, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}.zip"'}
    )


def build(exports: ExportService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["export"])

    @api.get("/drafts/{draft_id}/export.zip", response_class=StreamingResponse, responses=ZIP)
    async def export_draft(draft_id: DraftId, caller: TenantCaller) -> StreamingResponse:
        """One draft (any review state) as article.md + article.html (sanitised, images from the zip) + its
        images + index.json/index.csv."""
        return _zip(*await exports.draft_zip(caller.tenant, draft_id))

    @api.get("/sites/{site_id}/export.zip", response_class=StreamingResponse, responses=ZIP)
    async def export_site(site_id: SiteId, caller: TenantCaller) -> StreamingResponse:
        """Every approved (or since published) draft of the site, one folder each, with an index; a site
        without approved drafts gives a zip with an empty index."""
        return _zip(*await exports.site_zip(caller.tenant, site_id))

    return [api]
