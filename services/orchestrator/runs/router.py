"""Runs API: estimate, run now, follow, history, pause/resume/cancel, activity, batches in flight, figures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from services.orchestrator.runs.figures import AutomationFigures
from services.orchestrator.runs.service import RunService
from services.orchestrator.runs.views import ActivityView, EstimateView, Processing, RunHistory, RunView
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import AccountId, Limit, Page, RunId, SiteId

# How far back the automation figures look (their calendar periods are fixed: today, this week, this month).
WindowDays = Annotated[int, Query(ge=1, le=366, description="figures other than the run counts cover this many days")]


def build(runs: RunService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["runs"])

    @api.get("/sites/{site_id}/estimate")
    async def estimate(site_id: SiteId, caller: TenantCaller) -> EstimateView:
        """Credits a run would need now (per stage, with the assumptions), against what is available."""
        return await runs.estimate(caller.tenant, site_id)

    @api.post("/sites/{site_id}/runs", status_code=status.HTTP_201_CREATED, responses=responses(402, 409))
    async def run_now(site_id: SiteId, caller: TenantCaller) -> RunView:
        """Start a run over everything pending (402 with the numbers when credits are short, 409 when the
        site already has an active run)."""
        return await runs.start_run(caller.tenant, site_id)

    @api.get("/sites/{site_id}/runs/current")
    async def current_run(site_id: SiteId, caller: TenantCaller) -> RunView | None:
        """The site's running or paused run, or null."""
        return await runs.current(caller.tenant, site_id)

    @api.get("/sites/{site_id}/runs")
    async def run_history(
        site_id: SiteId, caller: TenantCaller, page: Page = 1, size: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> RunHistory:
        """The site's runs, newest first."""
        return await runs.history(caller.tenant, site_id, page, size)

    @api.get("/sites/{site_id}/processing")
    async def current_processing(site_id: SiteId, caller: TenantCaller) -> Processing:
        """Batches workers hold right now, with their items' titles."""
        return await runs.processing(caller.tenant, site_id)

    @api.get("/runs/{run_id}")
    async def get_run(run_id: RunId, caller: TenantCaller) -> RunView:
        return await runs.run(caller.tenant, run_id)

    @api.post("/runs/{run_id}/pause", responses=responses(409))
    async def pause(run_id: RunId, caller: TenantCaller) -> RunView:
        """Stop releasing batches; those in flight finish and are recorded."""
        return await runs.pause(caller.tenant, run_id)

    @api.post("/runs/{run_id}/resume", responses=responses(409))
    async def resume(run_id: RunId, caller: TenantCaller) -> RunView:
        return await runs.resume(caller.tenant, run_id)

    @api.post("/runs/{run_id}/cancel", responses=responses(409))
    async def cancel(run_id: RunId, caller: TenantCaller) -> RunView:
        """Drop unreleased batches and free the site at once."""
        return await runs.cancel(caller.tenant, run_id)

    @api.get("/runs/{run_id}/activity")
    async def activity(
        run_id: RunId,
        caller: TenantCaller,
        stage: Annotated[int | None, Query(ge=1, le=7)] = None,
        limit: Limit = 100,
    ) -> list[ActivityView]:
        """The run's activity log, oldest first (the newest `limit` lines)."""
        return await runs.activity(caller.tenant, run_id, stage, limit)

    @api.get("/sites/{site_id}/automation/figures")
    async def site_figures(site_id: SiteId, caller: TenantCaller, days: WindowDays = 30) -> AutomationFigures:
        """The site's automation figures: runs today / this week / this month (the site's time zone), success
        rate, average credits per run, average seconds per stage, pieces generated, credits spent by rules."""
        return await runs.site_figures(caller.tenant, site_id, days)

    @api.get("/accounts/{account_id}/automation/figures")
    async def account_figures(account_id: AccountId, caller: TenantCaller, days: WindowDays = 30) -> AutomationFigures:
        """The same figures over all the account's sites (calendar periods in UTC)."""
        return await runs.account_figures(caller.tenant, account_id, days)

    return [api]
