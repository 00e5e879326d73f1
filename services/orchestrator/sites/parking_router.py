"""Parked items API: what keeps failing (and what no run takes in any more), and un-parking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.orchestrator.sites.parking import ParkingService
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import INT64_MAX, Limit, SiteId
from shared.contracts import Stage
from shared.db.models import FailingItem


class FailureEntry(BaseModel):
    run_id: str
    reason: str
    at: AwareDatetime


class FailingItemView(BaseModel):
    stage: int
    stage_label: str
    item_id: int
    title: str | None = Field(description="The item's keyword, name or title (null when it no longer exists)")
    failed_runs: int = Field(description="Runs in a row that failed it")
    parked: bool = Field(description="No run takes it in until it is un-parked")
    parked_at: AwareDatetime | None
    last_run_id: str
    first_failed_at: AwareDatetime
    last_failed_at: AwareDatetime
    reasons: list[FailureEntry] = Field(description="The latest failures, oldest first")


class FailingItems(BaseModel):
    site_id: str
    park_after_failed_runs: int = Field(description="Runs in a row after which an item is parked (0: never)")
    items: list[FailingItemView]


class ItemRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: int = Field(ge=1, le=6, description="The stage that takes the item in (4: a writer task)")
    item_id: int = Field(ge=1, le=INT64_MAX)


class UnparkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemRef] = Field(min_length=1, max_length=1000)


class UnparkOut(BaseModel):
    unparked: list[ItemRef] = Field(description="Parked before; the next run takes them in again")
    not_parked: list[ItemRef] = Field(description="Not parked (unknown, still retrying, or another site's)")


def view(row: FailingItem, title: str | None) -> FailingItemView:
    return FailingItemView(
        stage=row.stage,
        stage_label=Stage(row.stage).label,
        item_id=row.item_id,
        title=title,
        failed_runs=row.failed_runs,
        parked=row.parked_at is not None,
        parked_at=row.parked_at,
        last_run_id=row.last_run_id,
        first_failed_at=row.first_failed_at,
        last_failed_at=row.last_failed_at,
        reasons=[FailureEntry.model_validate(r) for r in row.reasons],
    )


def build(parking: ParkingService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["sites"])

    @api.get("/sites/{site_id}/parked-items")
    async def parked_items(
        site_id: SiteId,
        caller: TenantCaller,
        include_retrying: Annotated[
            bool, Query(description="Also items that failed their last run(s) but are not parked yet")
        ] = False,
        stage: Annotated[int | None, Query(ge=1, le=6)] = None,
        limit: Limit = 100,
    ) -> FailingItems:
        """Items no run takes in any more because they failed `park_after_failed_runs` runs in a row, with the
        reasons (a draft the quality gate held back counts against its writer task, stage 4)."""
        rows, titles = await parking.items(
            caller.tenant, site_id, parked_only=not include_retrying, stage=stage, limit=limit
        )
        return FailingItems(
            site_id=site_id,
            park_after_failed_runs=parking.park_after,
            items=[view(r, titles.get((r.stage, r.item_id))) for r in rows],
        )

    @api.post("/sites/{site_id}/parked-items/unpark")
    async def unpark(site_id: SiteId, caller: TenantCaller, body: UnparkIn) -> UnparkOut:
        """Take items out of the parking: their failure count starts again and the next run takes them in."""
        wanted = [(i.stage, i.item_id) for i in body.items]
        done = await parking.unpark(caller.tenant, site_id, wanted)
        return UnparkOut(
            unparked=[ItemRef(stage=s, item_id=i) for s, i in dict.fromkeys(wanted) if (s, i) in done],
            not_parked=[ItemRef(stage=s, item_id=i) for s, i in dict.fromkeys(wanted) if (s, i) not in done],
        )

    return [api]
