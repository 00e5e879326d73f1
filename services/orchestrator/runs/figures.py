"""Automation figures of a site or an account (IGNY8's automation dashboard): runs today / this week / this
month, success rate, average credits per run, average seconds per stage, pieces generated, credits spent by
rules. Read from the runs domain's own tables (runs, stage_results) on request; nothing is kept.

Calendar periods ("today", "this week" from Monday, "this month") are those of a time zone: the site's
(its automation config) for a site, UTC for an account (its sites may sit in several). The other figures
cover the runs started in the last `days` days; the averages count finished runs only, since an active
run's credits and seconds are still growing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import RunStatus, Stage
from shared.db.models import Run, StageRunResult

FINISHED = (RunStatus.COMPLETED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)
# Run triggers that count as "spent by rules". Hook for the rules engine (issue 15, another branch): its
# actions start runs through the engine with this trigger, and their credits show up here with no other change.
# A rules engine that accounts differently (its scheduled-task rows' `credits_used`) passes its own
# `RuleCredits` to RunService instead (services.orchestrator.app).
RULE_TRIGGERS: tuple[str, ...] = ("rule",)
# A stage counts towards its average only when it did work (a stage with nothing pending closes at once).
TIMED_STAGE_STATUSES = ("completed", "stopped", "failed")


class Scope(BaseModel):
    """Whose runs: an account's, or one site's of it."""

    account_id: str
    site_id: str | None = None

    def runs(self) -> ColumnElement[bool]:
        where = Run.account_id == self.account_id
        return and_(where, Run.site_id == self.site_id) if self.site_id is not None else where


# (session, scope, since) -> credits the rules engine spent in that scope since then.
RuleCredits = Callable[[AsyncSession, Scope, datetime], Awaitable[Decimal]]


class RunCounts(BaseModel):
    today: int
    this_week: int = Field(description="since Monday 00:00")
    this_month: int


class StageSeconds(BaseModel):
    stage: int
    label: str
    stages_timed: int = Field(description="finished runs' stages that did work, of which this is the average")
    average_seconds: float


class AutomationFigures(BaseModel):
    account_id: str
    site_id: str | None
    timezone: str = Field(description="of the calendar periods: the site's, or UTC for an account")
    as_of: AwareDatetime
    runs_started: RunCounts
    window_days: int
    window_start: AwareDatetime = Field(description="the figures below cover runs started since")
    runs_finished: int
    runs_succeeded: int = Field(description="completed, not stopped for budget")
    success_rate: float | None = Field(description="succeeded / finished (0..1); null before any run finished")
    average_credits_per_run: Decimal | None = Field(description="over finished runs; null before any finished")
    average_seconds_per_stage: list[StageSeconds]
    pieces_generated: int = Field(description="drafts written (stage 4 items created)")
    credits_spent: Decimal
    credits_spent_by_rules: Decimal


def period_starts(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, datetime]:
    """Start of today, of this week (Monday) and of this month in `zone`, as aware datetimes."""
    today = now.astimezone(zone).date()

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=zone)

    return midnight(today), midnight(today - timedelta(days=today.weekday())), midnight(today.replace(day=1))


async def credits_of_rule_runs(session: AsyncSession, scope: Scope, since: datetime) -> Decimal:
    """The default RuleCredits: credits of runs started by a rule (RULE_TRIGGERS)."""
    stmt = select(func.coalesce(func.sum(Run.total_credits_used), 0)).where(
        scope.runs(), Run.started_at >= since, Run.trigger.in_(RULE_TRIGGERS)
    )
    return Decimal(await session.scalar(stmt) or 0)


async def figures(
    session: AsyncSession, scope: Scope, zone: ZoneInfo, days: int, now: datetime, rule_credits: RuleCredits
) -> AutomationFigures:
    today, week, month = period_starts(now, zone)
    counted = await session.execute(
        select(
            func.count().filter(Run.started_at >= today),
            func.count().filter(Run.started_at >= week),
            func.count().filter(Run.started_at >= month),
        ).where(scope.runs(), Run.started_at >= min(week, month))
    )
    n_today, n_week, n_month = counted.one()

    since = now - timedelta(days=days)
    in_window = and_(scope.runs(), Run.started_at >= since)
    finished = Run.status.in_(FINISHED)
    succeeded = and_(Run.status == RunStatus.COMPLETED.value, func.coalesce(Run.stopped_reason, "") != "budget")
    n_finished, n_succeeded, avg_credits, spent = (
        await session.execute(
            select(
                func.count().filter(finished),
                func.count().filter(succeeded),
                func.avg(Run.total_credits_used).filter(finished),
                func.coalesce(func.sum(Run.total_credits_used), 0),
            ).where(in_window)
        )
    ).one()

    stage_rows = await session.execute(
        select(StageRunResult.stage, func.count(), func.avg(StageRunResult.seconds))
        .join(Run, Run.id == StageRunResult.run_id)
        .where(
            in_window,
            finished,
            StageRunResult.stage < int(Stage.REVIEW),
            StageRunResult.status.in_(TIMED_STAGE_STATUSES),
            StageRunResult.batches_total > 0,
        )
        .group_by(StageRunResult.stage)
        .order_by(StageRunResult.stage)
    )
    pieces = await session.scalar(
        select(func.coalesce(func.sum(StageRunResult.items_created), 0))
        .join(Run, Run.id == StageRunResult.run_id)
        .where(in_window, StageRunResult.stage == int(Stage.DRAFTS))
    )
    return AutomationFigures(
        account_id=scope.account_id,
        site_id=scope.site_id,
        timezone=zone.key,
        as_of=now,
        runs_started=RunCounts(today=n_today, this_week=n_week, this_month=n_month),
        window_days=days,
        window_start=since,
        runs_finished=n_finished,
        runs_succeeded=n_succeeded,
        success_rate=round(n_succeeded / n_finished, 4) if n_finished else None,
        average_credits_per_run=round(Decimal(avg_credits), 4) if avg_credits is not None else None,
        average_seconds_per_stage=[
            StageSeconds(stage=stage, label=Stage(stage).label, stages_timed=n, average_seconds=round(avg, 3))
            for stage, n, avg in stage_rows
        ],
        pieces_generated=int(pieces or 0),
        credits_spent=Decimal(spent),
        credits_spent_by_rules=await rule_credits(session, scope, since),
    )
