"""History and credits: the site's runs with their stage results and activity, the account's ledger, and
the estimate for the next run."""

# No `from __future__ import annotations` here: the routes' `ViewerDep` is a local alias that FastAPI
# must see as an object, not as a string it would look up in the module's globals.

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.orchestrator.dashboard.context import Dashboard
from services.orchestrator.dashboard.pages_site import stage_cards
from services.orchestrator.dashboard.session import Viewer
from services.orchestrator.web.types import ResourceId

RUNS_PER_PAGE = 20
LEDGER_PER_PAGE = 50


def router(ctx: Dashboard) -> APIRouter:
    api = APIRouter()
    ViewerDep = Annotated[Viewer, Depends(ctx.viewer_dependency())]
    t = ctx.templates

    @api.get("/sites/{site_id}/history")
    async def history(
        request: Request,
        site_id: ResourceId,
        viewer: ViewerDep,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
        ledger_page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        runs = await ctx.runs.history(viewer.account_id, site_id, page, RUNS_PER_PAGE)
        ledger = await ctx.accounts.ledger(viewer.account_id, ledger_page, LEDGER_PER_PAGE)
        return await ctx.page(
            request,
            "history.html",
            viewer,
            site_id,
            tab="history",
            runs=runs,
            pages=max(1, -(-runs.total // RUNS_PER_PAGE)),
            ledger=ledger,
            ledger_page=ledger_page,
            account=await ctx.accounts.view(viewer.account_id),
            estimate=await ctx.runs.estimate(viewer.account_id, site_id),
        )

    @api.get("/sites/{site_id}/runs/{run_id}")
    async def run_detail(site_id: ResourceId, run_id: ResourceId, viewer: ViewerDep) -> Response:
        run = await ctx.runs.run(viewer.account_id, run_id)
        if run.site_id != site_id:
            return t.fragment(
                "partials/alert.html", status_code=404, status=404, detail="run not found", extra={}, errors=[]
            )
        activity = await ctx.runs.activity(viewer.account_id, run_id, None, 200)
        return t.fragment("partials/run_detail.html", run=run, cards=stage_cards(run, {}), activity=activity)

    return api
