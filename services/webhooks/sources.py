"""Which Kafka topics feed webhooks, and how each source message becomes webhook events.

A source is a topic, its contract and a mapper (pure: message → events, no I/O). A new source plugs in by
adding one `Source` to `SOURCES`; the service subscribes to its topic with the webhooks consumer group and
delivers what the mapper returns. Planned, once their events exist:

- the publisher's results (branch `wordpress`: `PublishResult` on `contentline.publish.results`) →
  `draft.published` / `draft.publish_failed`;

Each mapped event must carry the account (the source contract needs an `account_id`), and its id must come
from `event_id_for(message_id, type)` so a redelivered source message maps to the same event ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.webhooks.events import DraftsReady, EventType, RuleData, RunData, WebhookEvent, event_id_for
from shared.contracts import Message, RunEvent, RunStatus, Stage
from shared.rule_events import RuleExecuted
from shared.topics import RULE_EVENTS, RUN_EVENTS

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Source(Generic[M]):
    name: str  # short; names the inbox consumer ("webhooks.<name>") and the subscriber
    topic: str
    model: type[M]
    to_events: Callable[[M], list[WebhookEvent]]


# The orchestrator's review gate says "run completed: N drafts ready for review; ...". The run event carries no
# draft ids; when entity events exist (issue 15: a draft entering the review gate), draft.ready_for_review
# should come from them, one per draft, instead of this count.
_DRAFTS_READY = re.compile(r"\b(\d+) drafts? ready for review\b")


def _run_event(ev: RunEvent, event_type: EventType, stopped_reason: Any = None) -> WebhookEvent:
    return WebhookEvent(
        id=event_id_for(ev.message_id, event_type),
        type=event_type,
        timestamp=ev.occurred_at,
        account_id=ev.account_id,
        data=RunData(
            run_id=ev.run_id,
            site_id=ev.site_id,
            status=ev.status.value,
            stage=ev.stage,
            stopped_reason=stopped_reason,
            detail=ev.detail,
        ),
    )


def from_run_event(ev: RunEvent) -> list[WebhookEvent]:
    """Run lifecycle → webhook events. Stage transitions, resumes, cancels and the like map to nothing."""
    if ev.event == "completed" and ev.status is RunStatus.COMPLETED:
        # A run completes at the review gate (stage 7), or earlier only when it stopped for budget.
        if ev.stage != Stage.REVIEW:
            return [_run_event(ev, EventType.RUN_STOPPED_BUDGET, "budget")]
        events = [_run_event(ev, EventType.RUN_COMPLETED)]
        found = _DRAFTS_READY.search(ev.detail)
        if found and int(found.group(1)) > 0:
            events.append(
                WebhookEvent(
                    id=event_id_for(ev.message_id, EventType.DRAFT_READY_FOR_REVIEW),
                    type=EventType.DRAFT_READY_FOR_REVIEW,
                    timestamp=ev.occurred_at,
                    account_id=ev.account_id,
                    data=DraftsReady(run_id=ev.run_id, site_id=ev.site_id, drafts_ready=int(found.group(1))),
                )
            )
        return events
    if ev.event == "failed" and ev.status is RunStatus.FAILED:
        return [_run_event(ev, EventType.RUN_FAILED, "failed")]
    if ev.event == "paused" and ev.status is RunStatus.PAUSED:
        return [_run_event(ev, EventType.RUN_PAUSED)]
    return []


def from_rule_executed(ev: RuleExecuted) -> list[WebhookEvent]:
    """An execution that acted → rule.executed; one that did not (skipped, or failed before acting) → rule.skipped."""
    event_type = EventType.RULE_EXECUTED if ev.outcome == "executed" else EventType.RULE_SKIPPED
    return [
        WebhookEvent(
            id=event_id_for(ev.message_id, event_type),
            type=event_type,
            timestamp=ev.occurred_at,
            account_id=ev.account_id,
            data=RuleData(
                rule_id=ev.rule_id,
                rule_name=ev.rule_name,
                site_id=ev.site_id,
                task_id=ev.task_id,
                trigger=ev.trigger,
                reason=ev.reason,
                run_id=ev.run_id,
                actions=ev.actions,
                message=ev.notify_message,
            ),
        )
    ]


SOURCES: tuple[Source[Any], ...] = (
    Source("run-events", RUN_EVENTS, RunEvent, from_run_event),
    Source("rule-events", RULE_EVENTS, RuleExecuted, from_rule_executed),
)
