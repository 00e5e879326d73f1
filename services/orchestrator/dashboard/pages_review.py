"""Review: the queue and every draft of the site; a draft rendered as it will look with its images, its
quality score and reasons; approve / reject with a note, edit (with versions), regenerate, publish. Images
are served from the media store to the signed-in account that owns them."""

# No `from __future__ import annotations` here: the routes' `ViewerDep` is a local alias that FastAPI
# must see as an object, not as a string it would look up in the module's globals.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import FileResponse, Response

from services.orchestrator.dashboard.context import Dashboard
from services.orchestrator.dashboard.render import place_images
from services.orchestrator.dashboard.session import Viewer
from services.orchestrator.web.types import INT64_MAX, ResourceId

ItemId = Annotated[int, Path(ge=1, le=INT64_MAX)]
DRAFT_STATUSES = ("", "writing_images", "in_review", "approved", "rejected", "published", "superseded")


def router(ctx: Dashboard) -> APIRouter:
    api = APIRouter()
    ViewerDep = Annotated[Viewer, Depends(ctx.viewer_dependency())]
    t = ctx.templates

    @api.get("/sites/{site_id}/review")
    async def review_page(
        request: Request,
        site_id: ResourceId,
        viewer: ViewerDep,
        status: Annotated[
            str, Query(pattern="^(|writing_images|in_review|approved|rejected|published|superseded)$")
        ] = "",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        queue = await ctx.review.queue(viewer.account_id, site_id, 100)
        drafts = await ctx.content.drafts(viewer.account_id, site_id, status=status or None, page=page, size=50)
        return await ctx.page(
            request,
            "review.html",
            viewer,
            site_id,
            tab="review",
            queue=queue,
            drafts=drafts,
            status=status,
            statuses=DRAFT_STATUSES,
        )

    async def draft_context(viewer: Viewer, draft_id: int, message: str | None = None) -> dict[str, Any]:
        draft = await ctx.review.draft(viewer.account_id, draft_id)
        task_id = await ctx.curation.task_of(viewer.account_id, draft_id)
        siblings = await ctx.content.drafts(viewer.account_id, draft.site_id, task_id=task_id, size=50)
        summary = next(d for d in siblings.items if d.id == draft_id)
        images = await ctx.content.images(viewer.account_id, draft.site_id, draft_id=draft_id, size=100)
        shown = [
            {
                "url": f"/dashboard/images/{i.id}",
                "placement": i.placement,
                "alt_text": i.alt_text,
                "caption": i.caption,
                "width": i.width,
                "height": i.height,
            }
            for i in images.items
        ]
        featured = next((i for i in shown if i["placement"] == "featured"), None)
        versions = await ctx.curation.versions(viewer.account_id, draft_id)
        return {
            "draft": draft,
            "summary": summary,
            "others": [d for d in siblings.items if d.id != draft_id],
            "featured": featured,
            "body": place_images(draft.body_html, shown),
            "versions": [(getattr(row, "version", 1), source, row.created_at) for row, source in versions],
            "message": message,
            "csrf": viewer.csrf_token,
        }

    @api.get("/drafts/{draft_id}")
    async def draft_page(request: Request, draft_id: ItemId, viewer: ViewerDep) -> Response:
        context = await draft_context(viewer, draft_id)
        return await ctx.page(request, "draft.html", viewer, context["draft"].site_id, tab="review", **context)

    async def redraw(viewer: Viewer, draft_id: int, message: str) -> Response:
        return t.fragment("partials/draft_main.html", **(await draft_context(viewer, draft_id, message)))

    @api.post("/drafts/{draft_id}/decide")
    async def decide(
        draft_id: ItemId,
        viewer: ViewerDep,
        decision: Annotated[Literal["approved", "rejected"], Form()],
        note: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        await ctx.review.decide(viewer.account_id, draft_id, decision, _text(note))
        return await redraw(viewer, draft_id, f"Draft {decision}.")

    @api.post("/drafts/{draft_id}/edit")
    async def edit(
        draft_id: ItemId,
        viewer: ViewerDep,
        title: Annotated[str, Form(min_length=1, max_length=300)],
        meta_title: Annotated[str, Form(max_length=60)],
        meta_description: Annotated[str, Form(max_length=160)],
        body_markdown: Annotated[str, Form(min_length=1, max_length=200_000)],
    ) -> Response:
        changes = {
            "title": _line(title),
            "meta_title": _line(meta_title),
            "meta_description": _line(meta_description),
            "body_markdown": _text(body_markdown),
        }
        changed = await ctx.curation.edit(viewer.account_id, draft_id, changes, viewer.key_id)
        return await redraw(viewer, draft_id, "Saved as a new version." if changed else "Nothing changed.")

    @api.post("/drafts/{draft_id}/restore")
    async def restore(
        draft_id: ItemId, viewer: ViewerDep, version: Annotated[int, Form(ge=1, le=1_000_000)]
    ) -> Response:
        changed = await ctx.curation.restore(viewer.account_id, draft_id, version, viewer.key_id)
        return await redraw(viewer, draft_id, f"Version {version} restored." if changed else "Nothing changed.")

    @api.post("/drafts/{draft_id}/regenerate")
    async def regenerate(draft_id: ItemId, viewer: ViewerDep) -> Response:
        out = await ctx.curation.regenerate(viewer.account_id, draft_id)
        return await redraw(
            viewer,
            draft_id,
            f"Regenerating: run {out.run.run_id} writes a new draft for this "
            "article; it appears in the review queue when its images are done.",
        )

    @api.post("/drafts/{draft_id}/publish")
    async def publish(draft_id: ItemId, viewer: ViewerDep) -> Response:
        await ctx.review.publish(viewer.account_id, draft_id)
        return await redraw(viewer, draft_id, "Published.")

    @api.get("/images/{image_id}")
    async def image(image_id: ItemId, viewer: ViewerDep) -> FileResponse:
        path, mime = await ctx.content.image_file(viewer.account_id, image_id)
        return FileResponse(path, media_type=mime, headers={"Cache-Control": "private, max-age=3600"})

    return api


def _line(text: str) -> str:
    return " ".join("".join(c for c in text if c.isprintable()).split())


def _text(text: str) -> str:
    return "".join(c for c in text if c.isprintable() or c in "\n\t").replace("\r\n", "\n")
