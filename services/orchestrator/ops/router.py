"""Operator API for delivery plumbing (/ops/*): parked outbox rows and their retry."""

from __future__ import annotations

from fastapi import APIRouter

from services.orchestrator.ops.service import OpsService, ParkedRow
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import Limit, OutboxRowId


def build(ops: OpsService) -> list[APIRouter]:
    api = KindRouter(RouteKind.OPERATOR, tags=["operations (operator)"])

    @api.get("/ops/outbox/parked")
    async def parked_outbox(limit: Limit = 100) -> list[ParkedRow]:
        """Messages the broker refused for good, with the reason, oldest first."""
        return await ops.parked(limit)

    @api.post("/ops/outbox/{row_id}/retry", responses=responses(409))
    async def retry_outbox(row_id: OutboxRowId) -> ParkedRow:
        """Hand a parked row back to its producer's relay (after fixing the cause)."""
        return await ops.retry(row_id)

    return [api]
