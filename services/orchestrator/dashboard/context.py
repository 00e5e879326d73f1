"""What every dashboard page needs: the domain services (the same ones the API uses), the sessions, the
run event hub and the templates; and the few helpers that turn a request into a page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from services.orchestrator.accounts.service import AccountService
from services.orchestrator.content.service import ContentService
from services.orchestrator.dashboard.events import RunEventHub
from services.orchestrator.dashboard.render import Templates
from services.orchestrator.dashboard.session import Sessions, Viewer
from services.orchestrator.review.curation import DraftCuration
from services.orchestrator.review.service import ReviewService
from services.orchestrator.runs.service import RunService
from services.orchestrator.sites.service import SiteService


@dataclass
class Dashboard:
    accounts: AccountService
    sites: SiteService
    runs: RunService
    review: ReviewService
    content: ContentService
    curation: DraftCuration
    sessions: Sessions
    hub: RunEventHub
    templates: Templates

    def viewer_dependency(self) -> Callable[[Request], Awaitable[Viewer]]:
        async def viewer(request: Request) -> Viewer:
            return await self.sessions.require(request)

        return viewer

    async def page(
        self, request: Request, name: str, viewer: Viewer, site_id: str | None = None, **context: Any
    ) -> HTMLResponse:
        """A whole page: the layout needs the viewer's sites (navigation) and the current one."""
        sites = await self.sites.list_sites(viewer.account_id, 1, 200)
        site = await self.sites.get_site(viewer.account_id, site_id) if site_id else None
        return self.templates.page(request, name, viewer, sites=sites, site=site, **context)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"
