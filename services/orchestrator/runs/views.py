"""What the runs API answers with: runs with their per-stage results, history, activity, batches in flight."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

from services.orchestrator.estimate import Estimate
from shared.contracts import Stage
from shared.db.models import ActivityLog, Run, StageRunResult


class ItemFailureView(BaseModel):
    item_id: int
    reason: str


class TokenUse(BaseModel):
    """Model tokens of a run or stage from its `ai_calls` rows; `failed_*` are the calls whose reply could not
    be used (cut off, invalid, off target, refused, timed out...): what retries and re-asks cost. A request
    abandoned at its timeout has no usage (the provider reports none)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed_calls: int = 0
    failed_prompt_tokens: int = 0
    failed_completion_tokens: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed_tokens(self) -> int:
        return self.failed_prompt_tokens + self.failed_completion_tokens

    def add(self, other: TokenUse) -> TokenUse:
        return TokenUse(**{k: getattr(self, k) + getattr(other, k) for k in TokenUse.model_fields})


class StageView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage: int
    status: str
    items_in: int
    items_processed: int
    items_created: int
    items_skipped: int
    items_failed: int
    failures: list[ItemFailureView]
    batches_total: int
    batches_done: int
    credits: Decimal
    seconds: float
    partial: bool
    stopped_reason: str | None
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    tokens: TokenUse = Field(default_factory=TokenUse)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        return Stage(self.stage).label


class Progress(BaseModel):
    items_done: int
    items_total: int
    percent: float
    initial_total: int


class RunView(BaseModel):
    run_id: str
    site_id: str
    account_id: str
    trigger: str
    status: str
    current_stage: int
    current_stage_label: str | None
    initial_snapshot: dict[str, Any] = Field(description="pending counts and the estimate at the start")
    estimated_credits: Decimal = Field(description="The run's estimate: at the start, then revised after stage 1")
    reserved_credits: Decimal = Field(description="Held back from the account's available credits while active")
    revised_estimate: Estimate | None = Field(
        default=None,
        description="The estimate once stage 1 made the clusters (stage 1 at its actual cost, the rest from the "
        "clusters really pending); null before that, or when stage 1 had nothing to do",
    )
    progress: Progress
    total_credits_used: Decimal
    stopped_reason: str | None
    error_message: str | None
    started_at: AwareDatetime
    paused_at: AwareDatetime | None
    resumed_at: AwareDatetime | None
    cancelled_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    stages: list[StageView]
    liveness: Liveness
    in_flight: list[BatchWait] = Field(description="released batches without a result yet")
    tokens: TokenUse = Field(description="Model tokens of the whole run; failed_* = tokens of unusable replies")


class RunHistory(BaseModel):
    total: int
    page: int
    size: int
    runs: list[RunView]


class ActivityView(BaseModel):
    at: AwareDatetime
    stage: int | None
    level: str
    message: str

    @classmethod
    def of(cls, row: ActivityLog) -> ActivityView:
        return cls(at=row.created_at, stage=row.stage, level=row.level, message=row.message)


class BatchItem(BaseModel):
    id: int
    title: str


class BatchWait(BaseModel):
    """A released batch without a result yet: how long it has waited and how often it was asked."""

    command_id: str
    stage: int
    seq: int
    released_at: AwareDatetime | None
    waiting_seconds: float = Field(description="since release")
    sends: int = Field(description="times the command was sent: 1 + re-asks")
    reasks: int = Field(description="times it was asked again after a silence (same command id)")
    expected_within_seconds: float = Field(description="the silence after which it is asked again")
    silent: bool = Field(description="waiting longer than expected_within_seconds")
    next_ask_at: AwareDatetime | None = Field(description="the next re-ask; null when the deadline comes first")
    deadline_at: AwareDatetime | None = Field(description="the stage deadline fails the batch then")


class BatchInFlight(BatchWait):
    items: list[BatchItem]


class Liveness(BaseModel):
    """Whether the run's batches in flight are answered in time; `reason` says what is waiting."""

    silent: bool = Field(description="a batch in flight has waited longer than expected")
    reason: str | None
    batches_in_flight: int
    longest_wait_seconds: float
    reasks: int = Field(description="re-asks of the batches in flight so far")


class Processing(BaseModel):
    site_id: str
    run_id: str | None
    status: str | None = None
    stage: int | None = None
    liveness: Liveness | None = None
    batches: list[BatchInFlight]


class EstimateView(Estimate):
    balance: Decimal
    available: Decimal
    sufficient: bool = Field(description="available >= required (1.2 × total)")


def run_view(
    run: Run,
    results: list[StageRunResult],
    in_flight: list[BatchWait],
    liveness: Liveness,
    tokens: dict[int, TokenUse] | None = None,
) -> RunView:
    tokens = tokens or {}
    stages = [
        StageView.model_validate(r).model_copy(update={"tokens": tokens.get(r.stage, TokenUse())}) for r in results
    ]
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
        estimated_credits=run.estimated_credits,
        reserved_credits=run.reserved_credits,
        revised_estimate=Estimate.model_validate(run.revised_estimate) if run.revised_estimate else None,
        progress=Progress(
            items_done=done,
            items_total=total,
            percent=round(100 * done / total, 1) if total else 100.0,
            initial_total=int(run.initial_snapshot.get("total", 0)),
        ),
        total_credits_used=run.total_credits_used,
        stopped_reason=run.stopped_reason,
        error_message=run.error_message,
        started_at=run.started_at,
        paused_at=run.paused_at,
        resumed_at=run.resumed_at,
        cancelled_at=run.cancelled_at,
        completed_at=run.completed_at,
        stages=stages,
        liveness=liveness,
        in_flight=in_flight,
        tokens=functools.reduce(TokenUse.add, tokens.values(), TokenUse()),
    )
