"""Publishing API: settings, the publishing queue, a person's schedule actions, the WordPress connection."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.orchestrator.publishing.connections import ConnectionService
from services.orchestrator.publishing.service import PublishingService
from services.orchestrator.publishing.settings import PublishingSettingsPatch
from services.orchestrator.publishing.views import (
    ConnectionIn,
    ConnectionTestView,
    ConnectionView,
    DraftPublishing,
    QueueEntry,
    ScheduleIn,
    ScheduleState,
    SettingsOut,
)
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import DraftId, Limit, SiteId
from shared.contracts import utcnow
from shared.secrets import SecretError

# How far ahead a person may put a draft (the automatic modes look 90 days ahead).
MAX_AHEAD = timedelta(days=366)


def _body_error(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message}])


def _body_errors(exc: ValidationError) -> RequestValidationError:
    """A model checked inside the handler fails like one FastAPI checked: 422 naming body.<field>."""
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"]), "input": None} for e in exc.errors(include_url=False)]
    )


def build(publishing: PublishingService, connections: ConnectionService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["publishing"])

    @api.get("/sites/{site_id}/publishing/settings")
    async def get_settings(site_id: SiteId, caller: TenantCaller) -> SettingsOut:
        """Auto-approval, auto-publishing and the schedule's mode, days, times, targets and queue limit."""
        return await publishing.get_settings(caller.tenant, site_id)

    @api.patch("/sites/{site_id}/publishing/settings")
    async def update_settings(site_id: SiteId, caller: TenantCaller, body: PublishingSettingsPatch) -> SettingsOut:
        """Change some settings; the merged settings are validated as a whole (e.g. the stagger window)."""
        try:
            return await publishing.update_settings(caller.tenant, site_id, body)
        except ValidationError as exc:
            raise _body_errors(exc) from None

    @api.get("/sites/{site_id}/publishing/queue")
    async def publishing_queue(
        site_id: SiteId,
        caller: TenantCaller,
        state: Annotated[list[ScheduleState] | None, Query(description="only these states (repeatable)")] = None,
        limit: Limit = 100,
    ) -> list[QueueEntry]:
        """The site's drafts in the publishing schedule: by slot, the unscheduled (with their reasons) last."""
        return await publishing.queue(caller.tenant, site_id, state or [], limit)

    @api.put("/drafts/{draft_id}/schedule", responses=responses(409))
    async def schedule(draft_id: DraftId, caller: TenantCaller, body: ScheduleIn) -> DraftPublishing:
        """Schedule an approved draft at `at`, or move it there; without `at`, at the next free slot."""
        if body.at is not None:
            now = utcnow()
            if body.at <= now:
                raise _body_error("at", "must be in the future (publish-now publishes at once)")
            if body.at > now + MAX_AHEAD:
                raise _body_error("at", f"must be within {MAX_AHEAD.days} days")
        return await publishing.schedule(caller.tenant, draft_id, body.at)

    @api.delete("/drafts/{draft_id}/schedule", responses=responses(409))
    async def unschedule(draft_id: DraftId, caller: TenantCaller) -> DraftPublishing:
        """Take a draft out of the schedule (its slot is free again); it waits until a person acts."""
        return await publishing.unschedule(caller.tenant, draft_id)

    @api.post("/drafts/{draft_id}/publish-now", responses=responses(409))
    async def publish_now(draft_id: DraftId, caller: TenantCaller) -> DraftPublishing:
        """Hand an approved draft to the publisher now (also again after it failed)."""
        return await publishing.publish_now(caller.tenant, draft_id)

    @api.get("/sites/{site_id}/wordpress")
    async def get_connection(site_id: SiteId, caller: TenantCaller) -> ConnectionView | None:
        """The site's WordPress connection without its password, or null."""
        return await connections.get(caller.tenant, site_id)

    @api.put("/sites/{site_id}/wordpress")
    async def put_connection(site_id: SiteId, caller: TenantCaller, body: ConnectionIn) -> ConnectionView:
        """Create or replace the connection; the password is stored encrypted (or only its reference)."""
        try:
            return await connections.put(caller.tenant, site_id, body)
        except SecretError as exc:
            raise _body_error("app_password", f"cannot be stored: {exc}; give app_password_ref instead") from None

    @api.delete("/sites/{site_id}/wordpress", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
    async def delete_connection(site_id: SiteId, caller: TenantCaller) -> Response:
        """Remove the connection (drafts due later fail with the reason until a new one is set)."""
        await connections.delete(caller.tenant, site_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @api.post("/sites/{site_id}/wordpress/test")
    async def test_connection(site_id: SiteId, caller: TenantCaller) -> ConnectionTestView:
        """Try the stored connection against the site: what is wrong, in one line (`ok` false), or what it offers."""
        return await connections.test(caller.tenant, site_id)

    return [api]
