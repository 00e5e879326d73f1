"""Sign in and out, the site list, and the site automation page (IGNY8 seed 000): Run Now, the configure
dialog, schedule badge, credits, the Stage N/7 bar, seven stage cards, pause/resume/cancel, the activity
log, and the push stream that keeps all of it live."""

# No `from __future__ import annotations` here: the routes' `ViewerDep` is a local alias that FastAPI
# must see as an object, not as a string it would look up in the module's globals.

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError

from services.orchestrator.dashboard import forms
from services.orchestrator.dashboard.context import Dashboard
from services.orchestrator.dashboard.session import (
    COOKIE,
    PATH,
    SIGNIN_COOKIE,
    SignInRefused,
    Viewer,
    same,
    set_session_cookie,
    signin_token,
)
from services.orchestrator.runs.views import RunView
from services.orchestrator.web.types import ResourceId

STREAM_SECONDS = 300  # a stream ends after this; EventSource reconnects and gets the page's state again
COALESCE_SECONDS = 0.05
CARD_STATUS = {
    "running": "running",
    "completed": "done",
    "skipped": "skipped",
    "stopped": "stopped",
    "failed": "failed",
}


def stage_cards(run: RunView | None, pending: dict[int, int]) -> list[dict[str, Any]]:
    """Seven cards: a stage the run has not reached is pending (with what waits for it)."""
    results = {s.stage: s for s in run.stages} if run else {}
    cards = []
    for number in range(1, 8):
        result = results.get(number)
        card: dict[str, Any] = {"stage": number, "waiting": pending.get(number, 0), "result": result}
        card["status"] = CARD_STATUS.get(result.status, result.status) if result else "pending"
        cards.append(card)
    return cards


def schedule_badge(config: Any, row: Any) -> dict[str, Any]:
    if not config.is_enabled or row.next_run_at is None:
        return {"enabled": False, "text": "scheduling disabled", "note": row.last_schedule_note}
    local = row.next_run_at.astimezone(ZoneInfo(config.timezone))
    return {
        "enabled": True,
        "text": f"next run {local:%a %d %b %Y, %H:%M} ({config.timezone})",
        "note": row.last_schedule_note,
    }


async def live_context(ctx: Dashboard, viewer: Viewer, site_id: str) -> dict[str, Any]:
    account = viewer.account_id
    current = await ctx.runs.current(account, site_id)
    shown = current
    if shown is None:
        history = await ctx.runs.history(account, site_id, 1, 1)
        shown = history.runs[0] if history.runs else None
    pending = await ctx.sites.pipeline_overview(account, site_id)
    config, row, _ = await ctx.sites.get_config(account, site_id)
    return {
        "site_id": site_id,
        "run": shown,
        "active": current is not None,
        "cards": stage_cards(shown, pending),
        "pending": pending,
        "account": await ctx.accounts.view(account),
        "estimate": await ctx.runs.estimate(account, site_id),
        "schedule": schedule_badge(config, row),
        "activity": await ctx.runs.activity(account, shown.run_id, None, 60) if shown else [],
        "csrf": viewer.csrf_token,
    }


def router(ctx: Dashboard) -> APIRouter:
    api = APIRouter()
    ViewerDep = Annotated[Viewer, Depends(ctx.viewer_dependency())]
    t = ctx.templates

    # ------------------------------------------------------------------ signing in
    @api.get("/signin")
    async def signin_page(request: Request, next: str = "/dashboard/") -> Response:
        response = HTMLResponse("")
        token = signin_token(request, response)
        page = t.page(
            request, "signin.html", None, sites=[], site=None, signin_csrf=token, next=_local(next), error=None
        )
        for value in response.headers.getlist("set-cookie"):
            page.headers.append("set-cookie", value)
        return page

    @api.post("/signin")
    async def signin(
        request: Request,
        key: Annotated[str, Form(max_length=256)],
        csrf_token: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=500)] = "/dashboard/",
    ) -> Response:
        if not same(request.cookies.get(SIGNIN_COOKIE), csrf_token):
            error = "this sign-in form is stale; try again"
        else:
            try:
                token, _ = await ctx.sessions.sign_in(key)
            except SignInRefused as exc:
                error = exc.reason
            else:
                response = RedirectResponse(_local(next), status_code=303)
                set_session_cookie(response, request, token)
                response.delete_cookie(SIGNIN_COOKIE, path=PATH)
                return response
        fresh = HTMLResponse("")
        new_token = signin_token(request, fresh)
        page = t.page(
            request,
            "signin.html",
            None,
            status_code=401,
            sites=[],
            site=None,
            signin_csrf=new_token,
            next=_local(next),
            error=error,
        )
        for value in fresh.headers.getlist("set-cookie"):
            page.headers.append("set-cookie", value)
        return page

    @api.post("/signout")
    async def signout(viewer: ViewerDep) -> Response:
        await ctx.sessions.sign_out(viewer)
        response = RedirectResponse("/dashboard/signin", status_code=303)
        response.delete_cookie(COOKIE, path=PATH)
        return response

    # ------------------------------------------------------------------ sites
    @api.get("/")
    async def home(request: Request, viewer: ViewerDep) -> Response:
        return await ctx.page(request, "sites.html", viewer)

    @api.post("/sites")
    async def create_site(
        viewer: ViewerDep,
        name: Annotated[str, Form(min_length=1, max_length=200)],
        domain: Annotated[str, Form(max_length=253)] = "",
    ) -> Response:
        site = await ctx.sites.create_site(viewer.account_id, _line(name), _line(domain) or None)
        return Response(status_code=204, headers={"HX-Redirect": f"/dashboard/sites/{site.id}"})

    # ------------------------------------------------------------------ the automation page
    @api.get("/sites/{site_id}")
    async def automation(request: Request, site_id: ResourceId, viewer: ViewerDep) -> Response:
        live = await live_context(ctx, viewer, site_id)
        config, _, _ = await ctx.sites.get_config(viewer.account_id, site_id)
        return await ctx.page(
            request,
            "automation.html",
            viewer,
            site_id,
            tab="automation",
            live=live,
            form=forms.sections(config),
            form_errors={},
            saved=False,
        )

    async def live_fragment(viewer: Viewer, site_id: str) -> HTMLResponse:
        return t.fragment("partials/live.html", live=await live_context(ctx, viewer, site_id))

    @api.post("/sites/{site_id}/run")
    async def run_now(site_id: ResourceId, viewer: ViewerDep) -> Response:
        await ctx.runs.start_run(viewer.account_id, site_id)
        return await live_fragment(viewer, site_id)

    @api.post("/sites/{site_id}/runs/{run_id}/{action}")
    async def control(site_id: ResourceId, run_id: ResourceId, action: str, viewer: ViewerDep) -> Response:
        await ctx.sites.get_site(viewer.account_id, site_id)
        verbs = {"pause": ctx.runs.pause, "resume": ctx.runs.resume, "cancel": ctx.runs.cancel}
        if action not in verbs:
            return HTMLResponse("unknown action", status_code=404)
        view = await verbs[action](viewer.account_id, run_id)
        if view.site_id != site_id:
            return HTMLResponse("not found", status_code=404)
        return await live_fragment(viewer, site_id)

    @api.post("/sites/{site_id}/config")
    async def save_config(request: Request, site_id: ResourceId, viewer: ViewerDep) -> Response:
        await ctx.sites.get_site(viewer.account_id, site_id)  # 404 before reading anything of the form
        form = await request.form()
        current, _, _ = await ctx.sites.get_config(viewer.account_id, site_id)
        errors = forms.check(form, current)
        if not errors:
            patch, _ = forms.validate(forms.patch_from_form(form)[0])
            assert patch is not None  # forms.check found nothing
            try:
                config, _, _ = await ctx.sites.update_config(viewer.account_id, site_id, patch)
            except ValidationError as exc:  # changed by someone else meanwhile: say why, as for any error
                errors = forms.messages(exc)
            else:
                live = await live_context(ctx, viewer, site_id)
                return t.fragment(
                    "partials/config_form.html",
                    headers={"HX-Trigger": "config-saved"},
                    form=forms.sections(config),
                    form_errors={},
                    saved=True,
                    site_id=site_id,
                    csrf=viewer.csrf_token,
                    live=live,
                    oob=True,
                )
        config, _, _ = await ctx.sites.get_config(viewer.account_id, site_id)
        sections = forms.sections(config)
        for section in sections:  # show what was typed, not what is stored
            for f in section.fields:
                if f.kind != "checkbox" and f.name in form:
                    f.value = form.get(f.name)
                elif f.kind == "checkbox":
                    f.value = f.name in form
        return t.fragment(
            "partials/config_form.html",
            status_code=422,
            form=sections,
            form_errors=errors,
            saved=False,
            site_id=site_id,
            csrf=viewer.csrf_token,
            live=None,
            oob=False,
        )

    async def own_site(site_id: ResourceId, viewer: ViewerDep) -> str:
        """A dependency: it runs before the response starts, so another account's site is a real 404."""
        await ctx.sites.get_site(viewer.account_id, site_id)
        return site_id

    @api.get("/sites/{site_id}/stream", response_class=EventSourceResponse)
    async def stream(site_id: Annotated[str, Depends(own_site)], viewer: ViewerDep) -> AsyncIterator[ServerSentEvent]:
        """The page's live parts, pushed whenever a run event of this site arrives."""
        sub = ctx.hub.subscribe(site_id)
        try:
            yield await _render(viewer, site_id)  # what changed between the page load and now
            ends = time.monotonic() + STREAM_SECONDS
            while not sub.closed:
                left = ends - time.monotonic()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(sub.wake.wait(), timeout=left)
                except TimeoutError:
                    return
                await asyncio.sleep(COALESCE_SECONDS)  # a burst of events becomes one render
                sub.wake.clear()
                if sub.closed:
                    return
                yield await _render(viewer, site_id)
        finally:
            ctx.hub.unsubscribe(sub)

    async def _render(viewer: Viewer, site_id: str) -> ServerSentEvent:
        live = await live_context(ctx, viewer, site_id)
        html = t.render("partials/live.html", live=live)
        return ServerSentEvent(raw_data=html, event="live", retry=1000)

    return api


def _local(target: str) -> str:
    """Only paths of the dashboard itself are followed after signing in (no open redirect)."""
    return target if target.startswith("/dashboard/") and "//" not in target and "\\" not in target else "/dashboard/"


def _line(text: str) -> str:
    return " ".join("".join(c for c in text if c.isprintable()).split())
