"""Review API: the queue of drafts ready for a decision, a draft with its images, decide, publish."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.orchestrator.review.service import DraftView, QueueItem, ReviewService
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import DraftId, Limit, SafeText, SiteId


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approved", "rejected"]
    note: Annotated[SafeText, Field(max_length=2000)] = ""


def build(review: ReviewService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["review"])

    @api.get("/sites/{site_id}/review-queue")
    async def review_queue(site_id: SiteId, caller: TenantCaller, limit: Limit = 100) -> list[QueueItem]:
        """Drafts with all their images, awaiting approve/reject (low quality scores flagged)."""
        return await review.queue(caller.tenant, site_id, limit)

    @api.get("/drafts/{draft_id}")
    async def get_draft(draft_id: DraftId, caller: TenantCaller) -> DraftView:
        return await review.draft(caller.tenant, draft_id)

    @api.post("/drafts/{draft_id}/review", responses=responses(409))
    async def decide(draft_id: DraftId, caller: TenantCaller, body: DecisionIn) -> DraftView:
        """Approve or reject, once, with a note."""
        return await review.decide(caller.tenant, draft_id, body.decision, body.note)

    @api.post("/drafts/{draft_id}/publish", responses=responses(409))
    async def publish(draft_id: DraftId, caller: TenantCaller) -> DraftView:
        """Publish an approved draft: emits `ArticlePublished` for CMS connectors."""
        return await review.publish(caller.tenant, draft_id)

    return [api]
