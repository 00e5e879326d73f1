"""Keywords and clusters: upload a planner export (imported, duplicated, rejected with line numbers),
browse keywords (disable, enable, move), browse clusters and fix them (rename, move, merge, split)."""

# No `from __future__ import annotations` here: the routes' `ViewerDep` is a local alias that FastAPI
# must see as an object, not as a string it would look up in the module's globals.

import asyncio
import csv
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response

from services.orchestrator.dashboard.context import Dashboard
from services.orchestrator.dashboard.session import Viewer
from services.orchestrator.importing import ImportError_, parse_csv
from services.orchestrator.safetext import describe_bad_char
from services.orchestrator.web.types import INT64_MAX, ResourceId

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
PAGE_SIZE = 50
KeywordIds = Annotated[list[int], Form(min_length=1, max_length=10_000)]
ClusterId = Annotated[int, Form(ge=1, le=INT64_MAX)]
ClusterPath = Annotated[int, Path(ge=1, le=INT64_MAX)]


def _parse(data: bytes) -> tuple[Any, list[str]]:
    parsed = parse_csv(data)
    bad = [
        f"keyword {n + 1}: {problem}"
        for n, k in enumerate(parsed.keywords)
        if (problem := describe_bad_char(k.keyword))
    ]
    return parsed, bad


def router(ctx: Dashboard) -> APIRouter:
    api = APIRouter()
    ViewerDep = Annotated[Viewer, Depends(ctx.viewer_dependency())]
    t = ctx.templates

    async def keyword_table(
        viewer: Viewer, site_id: str, status: str | None, q: str | None, page: int
    ) -> dict[str, Any]:
        keywords = await ctx.content.keywords(
            viewer.account_id, site_id, status=status or None, q=q or None, sort="id", page=page, size=PAGE_SIZE
        )
        clusters = await ctx.content.clusters(viewer.account_id, site_id, min_size=1, sort="name", keywords=0, size=500)
        return {
            "keywords": keywords,
            "clusters": clusters.items,
            "status": status or "",
            "q": q or "",
            "site_id": site_id,
            "pages": max(1, -(-keywords.total // PAGE_SIZE)),
        }

    # ------------------------------------------------------------------ keywords
    @api.get("/sites/{site_id}/keywords")
    async def keywords_page(
        request: Request,
        site_id: ResourceId,
        viewer: ViewerDep,
        status: Annotated[str, Query(pattern="^(|pending|clustered|disabled)$")] = "",
        q: Annotated[str, Query(max_length=200)] = "",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        table = await keyword_table(viewer, site_id, status, q, page)
        return await ctx.page(request, "keywords.html", viewer, site_id, tab="keywords", table=table)

    @api.get("/sites/{site_id}/keywords/table")
    async def keywords_table(
        site_id: ResourceId,
        viewer: ViewerDep,
        status: Annotated[str, Query(pattern="^(|pending|clustered|disabled)$")] = "",
        q: Annotated[str, Query(max_length=200)] = "",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        """The keyword table alone: reloaded after an upload (the `keywords-changed` event)."""
        table = await keyword_table(viewer, site_id, status, q, page)
        return t.fragment("partials/keyword_table.html", table=table, csrf=viewer.csrf_token)

    @api.post("/sites/{site_id}/keywords/upload")
    async def upload(site_id: ResourceId, viewer: ViewerDep, file: Annotated[UploadFile, File()]) -> Response:
        await ctx.sites.get_site(viewer.account_id, site_id)
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        name = (file.filename or "upload")[:80]
        result: dict[str, Any] = {"name": name, "error": None}
        if len(data) > MAX_UPLOAD_BYTES:
            result["error"] = f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
            return t.fragment("partials/import_result.html", status_code=413, result=result)
        try:
            parsed, bad = await asyncio.to_thread(_parse, data)
        except (ImportError_, csv.Error, ValueError) as exc:
            result["error"] = f"cannot import {name}: {str(exc)[:300]}"
            return t.fragment("partials/import_result.html", status_code=422, result=result)
        rejected = [{"line": p.line, "reason": p.reason} for p in parsed.problems]
        if bad:
            result["error"] = "text the database cannot store: " + "; ".join(bad[:5])
            return t.fragment("partials/import_result.html", status_code=422, result=result)
        if not parsed.keywords:
            result |= {"error": f"no importable keyword rows in {name}", "rejected": rejected}
            return t.fragment("partials/import_result.html", status_code=422, result=result)
        summary = await ctx.sites.import_keywords(viewer.account_id, site_id, parsed.keywords, f"csv:{name}")
        result |= {
            "received": summary.received + parsed.duplicates_in_file + len(parsed.problems),
            "imported": summary.imported,
            "duplicates": summary.duplicates + parsed.duplicates_in_file,
            "rejected": rejected[:1000],
        }
        return t.fragment("partials/import_result.html", headers={"HX-Trigger": "keywords-changed"}, result=result)

    async def keyword_table_fragment(viewer: Viewer, site_id: str, status: str, q: str, page: int) -> Response:
        """The keyword table as the page shows it after an edit (same filters, same page)."""
        return t.fragment(
            "partials/keyword_table.html",
            table=await keyword_table(viewer, site_id, status, q, page),
            csrf=viewer.csrf_token,
        )

    @api.post("/sites/{site_id}/keywords/status")
    async def keyword_status(
        site_id: ResourceId,
        viewer: ViewerDep,
        keyword_ids: KeywordIds,
        enabled: Annotated[bool, Form()],
        status: Annotated[str, Form(pattern="^(|pending|clustered|disabled)$")] = "",
        q: Annotated[str, Form(max_length=200)] = "",
        page: Annotated[int, Form(ge=1, le=100_000)] = 1,
    ) -> Response:
        await ctx.content.set_keywords_enabled(viewer.account_id, site_id, keyword_ids, enabled)
        return await keyword_table_fragment(viewer, site_id, status, q, page)

    @api.post("/sites/{site_id}/keywords/move")
    async def keyword_move(
        site_id: ResourceId,
        viewer: ViewerDep,
        keyword_ids: KeywordIds,
        cluster_id: ClusterId,
        status: Annotated[str, Form(pattern="^(|pending|clustered|disabled)$")] = "",
        q: Annotated[str, Form(max_length=200)] = "",
        page: Annotated[int, Form(ge=1, le=100_000)] = 1,
    ) -> Response:
        await ctx.content.move_keywords(viewer.account_id, site_id, cluster_id, keyword_ids)
        return await keyword_table_fragment(viewer, site_id, status, q, page)

    # ------------------------------------------------------------------ clusters
    async def cluster_list(viewer: Viewer, site_id: str, q: str, page: int) -> dict[str, Any]:
        clusters = await ctx.content.clusters(
            viewer.account_id,
            site_id,
            q=q or None,
            min_size=1,
            sort="size_desc",
            keywords=100,
            page=page,
            size=PAGE_SIZE,
        )
        every = await ctx.content.clusters(viewer.account_id, site_id, min_size=1, sort="name", keywords=0, size=500)
        return {
            "clusters": clusters,
            "all": every.items,
            "site_id": site_id,
            "q": q,
            "page": page,
            "pages": max(1, -(-clusters.total // PAGE_SIZE)),
        }

    @api.get("/sites/{site_id}/clusters")
    async def clusters_page(
        request: Request,
        site_id: ResourceId,
        viewer: ViewerDep,
        q: Annotated[str, Query(max_length=200)] = "",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        listing = await cluster_list(viewer, site_id, q, page)
        return await ctx.page(request, "clusters.html", viewer, site_id, tab="clusters", listing=listing)

    async def after_edit(viewer: Viewer, site_id: str, q: str, page: int, message: str) -> Response:
        listing = await cluster_list(viewer, site_id, q, page)
        return t.fragment("partials/cluster_list.html", listing=listing, message=message)

    @api.post("/sites/{site_id}/clusters/{cluster_id}/rename")
    async def rename(
        site_id: ResourceId,
        cluster_id: ClusterPath,
        viewer: ViewerDep,
        name: Annotated[str, Form(min_length=1, max_length=200)],
        q: Annotated[str, Form(max_length=200)] = "",
        page: Annotated[int, Form(ge=1, le=100_000)] = 1,
    ) -> Response:
        await ctx.content.rename_cluster(viewer.account_id, site_id, cluster_id, _line(name))
        return await after_edit(viewer, site_id, q, page, f"Renamed to {_line(name)!r}.")

    @api.post("/sites/{site_id}/clusters/{cluster_id}/merge")
    async def merge(
        site_id: ResourceId,
        cluster_id: ClusterPath,
        viewer: ViewerDep,
        into_cluster_id: ClusterId,
        q: Annotated[str, Form(max_length=200)] = "",
        page: Annotated[int, Form(ge=1, le=100_000)] = 1,
    ) -> Response:
        out = await ctx.content.merge_clusters(viewer.account_id, site_id, into_cluster_id, cluster_id)
        target = next((c for c in out.clusters if c.id == into_cluster_id), None)
        size = f" ({target.size} keywords)" if target else ""
        return await after_edit(
            viewer, site_id, q, page, f"Merged into {target.name if target else into_cluster_id}{size}."
        )

    @api.post("/sites/{site_id}/clusters/{cluster_id}/split")
    async def split(
        site_id: ResourceId,
        cluster_id: ClusterPath,
        viewer: ViewerDep,
        keyword_ids: KeywordIds,
        name: Annotated[str, Form(min_length=1, max_length=200)],
        q: Annotated[str, Form(max_length=200)] = "",
        page: Annotated[int, Form(ge=1, le=100_000)] = 1,
    ) -> Response:
        await ctx.content.split_cluster(viewer.account_id, site_id, cluster_id, keyword_ids, _line(name))
        return await after_edit(viewer, site_id, q, page, f"Split {len(keyword_ids)} keywords into {_line(name)!r}.")

    @api.post("/sites/{site_id}/clusters/{cluster_id}/move")
    async def move(
        site_id: ResourceId,
        cluster_id: ClusterPath,
        viewer: ViewerDep,
        keyword_ids: KeywordIds,
        to_cluster_id: ClusterId,
        q: Annotated[str, Form(max_length=200)] = "",
        page: Annotated[int, Form(ge=1, le=100_000)] = 1,
    ) -> Response:
        await ctx.content.cluster(viewer.account_id, site_id, cluster_id, 0)  # 404 for a cluster of another site
        await ctx.content.move_keywords(viewer.account_id, site_id, to_cluster_id, keyword_ids)
        return await after_edit(viewer, site_id, q, page, f"Moved {len(keyword_ids)} keywords.")

    return api


def _line(text: str) -> str:
    return " ".join("".join(c for c in text if c.isprintable()).split())
