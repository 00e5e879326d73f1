"""API read models: runs with their per-stage results, history, activity."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import Stage
from shared.db.models import ActivityLog, Run, StageRunResult


class StageView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage: int
    status: str
    items_in: int
    items_processed: int
    items_created: int
    items_skipped: int
    items_failed: int
    failures: list[dict[str, Any]]
    batches_total: int
    batches_done: int
    credits: Decimal
    seconds: float
    partial: bool
    stopped_reason: str | None
    started_at: datetime
    finished_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        return Stage(self.stage).label


class RunView(BaseModel):
    run_id: str
    site_id: str
    account_id: str
    trigger: str
    status: str
    current_stage: int
    current_stage_label: str | None
    initial_snapshot: dict[str, Any]
    progress: dict[str, Any]
    total_credits_used: Decimal
    stopped_reason: str | None
    error_message: str | None
    started_at: datetime
    paused_at: datetime | None
    resumed_at: datetime | None
    cancelled_at: datetime | None
    completed_at: datetime | None
    stages: list[StageView]


class ActivityView(BaseModel):
    at: datetime
    stage: int | None
    level: str
    message: str


async def run_view(session: AsyncSession, run: Run) -> RunView:
    results = (
        await session.scalars(
            select(StageRunResult).where(StageRunResult.run_id == run.id).order_by(StageRunResult.stage)
        )
    ).all()
    stages = [StageView.model_validate(r) for r in results]
    # Global progress: items finished (processed + failed) over everything the stages took in.
    done = sum(s.items_processed + s.items_failed + s.items_skipped for s in stages if s.stage <= 6)
    total = sum(s.items_in for s in stages if s.stage <= 6)
    return RunView(
        run_id=run.id,
        site_id=run.site_id,
        account_id=run.account_id,
        trigger=run.trigger,
        status=run.status,
        current_stage=run.current_stage,
        current_stage_label=Stage(run.current_stage).label if run.current_stage else None,
        initial_snapshot=run.initial_snapshot,
        progress={
            "items_done": done,
            "items_total": total,
            "percent": round(100 * done / total, 1) if total else 100.0,
            "initial_total": run.initial_snapshot.get("total", 0),
        },
        total_credits_used=run.total_credits_used,
        stopped_reason=run.stopped_reason,
        error_message=run.error_message,
        started_at=run.started_at,
        paused_at=run.paused_at,
        resumed_at=run.resumed_at,
        cancelled_at=run.cancelled_at,
        completed_at=run.completed_at,
        stages=stages,
    )


async def activity(session: AsyncSession, run_id: str, stage: int | None, limit: int) -> list[ActivityView]:
    stmt = select(ActivityLog).where(ActivityLog.run_id == run_id)
    if stage is not None:
        stmt = stmt.where(ActivityLog.stage == stage)
    rows = (await session.scalars(stmt.order_by(ActivityLog.id.desc()).limit(limit))).all()
    return [ActivityView(at=r.created_at, stage=r.stage, level=r.level, message=r.message) for r in reversed(rows)]
