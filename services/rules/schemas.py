"""Rule definitions (the request bodies of the rules routes) and the views the routes answer with.

Validation names what is wrong: an unknown field of a condition, an operator or an action type outside the
catalogue, a condition on a field the trigger's events do not carry, a bad cron expression or time zone.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from services.rules.cron import check_cron
from shared.entity_events import (
    ClusterCreated,
    ContentGenerated,
    EntityEventType,
    IdeaCreated,
    KeywordAdded,
    TaskCreated,
)

ItemIds = Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(max_length=1000)]
Line = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\u0000-\u001f]*$")]
Text = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f]*$")]


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    KEYWORD_ADDED = "keyword_added"
    CLUSTER_CREATED = "cluster_created"
    IDEA_CREATED = "idea_created"
    CONTENT_GENERATED = "content_generated"
    TASK_CREATED = "task_created"


# What a condition may name, per trigger: the fields of the entity event (schedule rules have none).
FIELDS: dict[Trigger, frozenset[str]] = {
    Trigger.SCHEDULE: frozenset(),
    Trigger.KEYWORD_ADDED: frozenset(KeywordAdded.model_fields) - {"type"},
    Trigger.CLUSTER_CREATED: frozenset(ClusterCreated.model_fields) - {"type"},
    Trigger.IDEA_CREATED: frozenset(IdeaCreated.model_fields) - {"type"},
    Trigger.TASK_CREATED: frozenset(TaskCreated.model_fields) - {"type"},
    Trigger.CONTENT_GENERATED: frozenset(ContentGenerated.model_fields) - {"type"},
}
assert {t.value for t in EntityEventType} == {t.value for t in Trigger} - {"schedule"}

Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"]
Scalar = int | float | str | bool | None


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=60, pattern=r"^[a-z_]+$")
    operator: Operator
    value: Scalar | list[Scalar]

    @model_validator(mode="after")
    def _value_fits(self) -> Condition:
        if self.operator == "in" and not isinstance(self.value, list):
            raise ValueError("operator 'in' takes a list value")
        if self.operator != "in" and isinstance(self.value, list):
            raise ValueError(f"operator {self.operator!r} takes a single value, not a list")
        if len(self.value) > 100 if isinstance(self.value, list) else False:
            raise ValueError("an 'in' list holds at most 100 values")
        return self


class GenerateIdeas(BaseModel):
    """Ideas for `cluster_ids` (stage 2); empty = the cluster of the triggering event."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["generate_ideas"]
    cluster_ids: ItemIds = Field(default_factory=list)


class GenerateContent(BaseModel):
    """Drafts for `task_ids` (stage 4); empty = the task of the triggering event."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["generate_content"]
    task_ids: ItemIds = Field(default_factory=list)


class StartRun(BaseModel):
    """A run over everything pending of the site, capped at the rule's credit limit."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["start_run"]


class Notify(BaseModel):
    """A `rule.executed` webhook event carrying `message`."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["notify"]
    message: Text = ""


Action = Annotated[GenerateIdeas | GenerateContent | StartRun | Notify, Field(discriminator="type")]
RUN_ACTIONS = frozenset({"generate_ideas", "generate_content", "start_run"})


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(min_length=9, max_length=120, description="five-field cron expression, e.g. '0 6 * * 1-5'")
    timezone: str = Field(default="UTC", max_length=64)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class RuleSpec(BaseModel):
    """A whole rule definition (create; an update is merged into the stored one and checked as this)."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1)
    description: Text = ""
    trigger: Trigger
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    actions: list[Action] = Field(min_length=1, max_length=10)
    schedule: Schedule | None = None
    is_active: bool = True
    max_executions_per_day: int = Field(default=10, ge=0, le=10_000)
    credit_limit_per_execution: Decimal = Field(default=Decimal(100), ge=0, le=Decimal(10_000_000), decimal_places=4)

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        known = FIELDS[self.trigger]
        unknown = [c.field for c in self.conditions if c.field not in known]
        if unknown:
            fields = ", ".join(sorted(known)) or "none"
            raise ValueError(
                f"conditions name unknown fields {unknown} for trigger {self.trigger.value!r} (known: {fields})"
            )
        if self.trigger is Trigger.SCHEDULE and self.schedule is None:
            raise ValueError("a 'schedule' rule needs schedule.cron")
        if self.trigger is not Trigger.SCHEDULE and self.schedule is not None:
            raise ValueError(f"schedule is only for trigger 'schedule', not {self.trigger.value!r}")
        if sum(a.type in RUN_ACTIONS for a in self.actions) > 1:
            raise ValueError("at most one of generate_ideas, generate_content, start_run per rule (one run per site)")
        for a in self.actions:
            if isinstance(a, GenerateIdeas) and not a.cluster_ids and self.trigger is not Trigger.CLUSTER_CREATED:
                raise ValueError("generate_ideas needs cluster_ids unless the trigger is cluster_created")
            if isinstance(a, GenerateContent) and not a.task_ids and self.trigger is not Trigger.TASK_CREATED:
                raise ValueError("generate_content needs task_ids unless the trigger is task_created")
        return self


class RuleUpdate(BaseModel):
    """Only the fields given change; the result must still be a valid rule."""

    model_config = ConfigDict(extra="forbid")

    name: Line | None = Field(default=None, min_length=1)
    description: Text | None = None
    trigger: Trigger | None = None
    conditions: list[Condition] | None = Field(default=None, max_length=20)
    actions: list[Action] | None = Field(default=None, min_length=1, max_length=10)
    schedule: Schedule | None = None
    is_active: bool | None = None
    max_executions_per_day: int | None = Field(default=None, ge=0, le=10_000)
    credit_limit_per_execution: Decimal | None = Field(default=None, ge=0, le=Decimal(10_000_000), decimal_places=4)


class RuleView(BaseModel):
    id: str
    site_id: str
    name: str
    description: str
    trigger: Trigger
    conditions: list[Condition]
    actions: list[Action]
    schedule: Schedule | None
    next_fire_at: datetime | None
    is_active: bool
    max_executions_per_day: int
    credit_limit_per_execution: Decimal
    executions_today: int
    last_executed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class TaskView(BaseModel):
    id: int
    rule_id: str
    site_id: str
    trigger: str
    status: TaskStatus
    scheduled_at: datetime
    executed_at: datetime | None
    result: dict[str, Any]
    error_message: str | None
    credits_used: Decimal
    run_id: str | None
    attempts: int


class TaskPage(BaseModel):
    items: list[TaskView]
    page: int
    size: int
    total: int


class RuleTestIn(BaseModel):
    """The entity fields to test the conditions against; without them, those of the rule's latest event."""

    model_config = ConfigDict(extra="forbid")
    sample: dict[str, Scalar] | None = Field(default=None, max_length=50)


class ConditionOutcome(BaseModel):
    condition: Condition
    holds: bool
    actual: Scalar | list[Scalar] = None


class RuleTestResult(BaseModel):
    rule_id: str
    sample_source: Literal["given", "latest_event", "none"]
    sample: dict[str, Any]
    conditions_met: bool
    conditions: list[ConditionOutcome]
    would_skip_because: str | None  # the seed's reason it would not act now (nothing is executed)
