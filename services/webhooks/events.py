"""The webhook event catalogue and the JSON body every request carries (the receivers' contract).

Event types (what an endpoint subscribes to):

| type                     | when                                                                  | data          |
|--------------------------|-----------------------------------------------------------------------|---------------|
| `run.completed`          | a run reached the review gate                                         | `RunData`     |
| `run.failed`             | a run failed (a stage that did nothing at all, e.g. workers down)     | `RunData`     |
| `run.paused`             | a run was paused                                                      | `RunData`     |
| `run.stopped_budget`     | a run ended early for budget (status completed, stopped_reason budget)| `RunData`     |
| `draft.ready_for_review` | a completed run admitted drafts to the review gate (one per run)      | `DraftsReady` |
| `draft.published`        | a draft went live on its CMS (source: the publisher, not wired yet)   | to be defined |
| `draft.publish_failed`   | publishing a draft failed for good (source: the publisher, not yet)   | to be defined |
| `rule.executed`          | an automation rule acted (its `notify` action's message included)     | `RuleData`    |
| `rule.skipped`           | a rule did not act, with the reason (seed 003's words) or the error   | `RuleData`    |
| `webhook.test`           | "send test event" only; not subscribable                              | `TestData`    |

Types whose source does not exist yet can already be subscribed to: they flow once their mapper is added to
`services.webhooks.sources.SOURCES`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EventType(StrEnum):
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_PAUSED = "run.paused"
    RUN_STOPPED_BUDGET = "run.stopped_budget"
    DRAFT_READY_FOR_REVIEW = "draft.ready_for_review"
    DRAFT_PUBLISHED = "draft.published"
    DRAFT_PUBLISH_FAILED = "draft.publish_failed"
    RULE_EXECUTED = "rule.executed"
    RULE_SKIPPED = "rule.skipped"
    TEST = "webhook.test"


SUBSCRIBABLE: frozenset[EventType] = frozenset(EventType) - {EventType.TEST}

# Fixed namespace: an event's id is derived from its source message, so the same source event always yields the
# same webhook-id (receivers deduplicate by it, and so does the (endpoint, event) unique key).
_EVENT_NAMESPACE = uuid.UUID("6f0f7c56-3f0e-4a52-9d55-2c1f5f6a8b11")


def event_id_for(source_message_id: str, event_type: EventType) -> str:
    return "evt_" + uuid.uuid5(_EVENT_NAMESPACE, f"{source_message_id}:{event_type.value}").hex


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunData(_Data):
    run_id: str
    site_id: str
    status: str  # running | paused | completed | failed
    stage: int = Field(ge=0, le=7)  # the stage the run was at (7 = review gate)
    stopped_reason: Literal["budget", "failed"] | None = None
    detail: str = ""


class DraftsReady(_Data):
    run_id: str
    site_id: str
    drafts_ready: int = Field(ge=1)  # drafts the run admitted to the site's review queue


class RuleData(_Data):
    rule_id: str
    rule_name: str
    site_id: str
    task_id: int  # the scheduled-task row (GET /api/v1/sites/{site_id}/scheduled-tasks)
    trigger: str
    reason: str = ""  # why it was skipped: Rule is inactive | Execution limit reached | Insufficient credits | ...
    run_id: str | None = None  # the targeted run it started
    actions: list[str] = Field(default_factory=list)
    message: str | None = None  # the `notify` action's text


class TestData(_Data):
    endpoint_id: str
    message: str


class WebhookEvent(BaseModel):
    """The JSON body of every webhook request, in the Standard Webhooks shape (`type`, `timestamp`, `data`).

    `id` is also the `webhook-id` header: the same on every attempt, so receivers can drop duplicates.
    `timestamp` is when the thing happened (the source event's time), not when this attempt was made (that
    is the `webhook-timestamp` header). A breaking change adds a new `schema_version`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    id: str = Field(min_length=8, max_length=64)
    type: EventType
    timestamp: datetime
    account_id: str
    data: RunData | DraftsReady | RuleData | TestData
