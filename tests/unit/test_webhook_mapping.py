"""Run events → webhook event types: which lifecycle events notify, with what, and the same ids every time."""

from __future__ import annotations

import pytest

from services.webhooks.events import DraftsReady, EventType, RunData, WebhookEvent
from services.webhooks.sources import SOURCES, from_run_event
from shared.contracts import RunEvent, RunStatus
from shared.rule_events import RuleExecuted
from shared.topics import RULE_EVENTS, RUN_EVENTS


def run_event(event: str, status: RunStatus, stage: int, detail: str = "") -> RunEvent:
    return RunEvent(account_id="acc", site_id="site", run_id="run_1", stage=stage, status=status, event=event,
                    detail=detail)  # fmt: skip


def test_completed_at_the_review_gate_is_run_completed_plus_drafts_ready() -> None:
    # The orchestrator's own wording (services/orchestrator: the review gate's "completed" event).
    ev = run_event("completed", RunStatus.COMPLETED, 7,
                   "run completed: 3 drafts ready for review; 12.50 credits used; reservation released")  # fmt: skip
    completed, ready = from_run_event(ev)
    assert completed.type is EventType.RUN_COMPLETED and ready.type is EventType.DRAFT_READY_FOR_REVIEW
    assert completed.account_id == ready.account_id == "acc"
    assert completed.timestamp == ev.occurred_at
    assert isinstance(completed.data, RunData) and completed.data.stopped_reason is None
    assert completed.data.run_id == "run_1" and completed.data.status == "completed" and completed.data.stage == 7
    assert ready.data == DraftsReady(run_id="run_1", site_id="site", drafts_ready=3)


def test_completed_with_no_drafts_sends_no_drafts_ready() -> None:
    ev = run_event("completed", RunStatus.COMPLETED, 7, "run completed: 0 drafts ready for review; 1.00 credits used")
    assert [e.type for e in from_run_event(ev)] == [EventType.RUN_COMPLETED]


def test_completed_before_the_review_gate_is_a_budget_stop() -> None:
    ev = run_event("completed", RunStatus.COMPLETED, 4,
                   "run stopped for budget at stage 4; 2 batches left for the next run; 9.00 credits used")  # fmt: skip
    [event] = from_run_event(ev)
    assert event.type is EventType.RUN_STOPPED_BUDGET
    assert isinstance(event.data, RunData) and event.data.stopped_reason == "budget" and event.data.stage == 4


@pytest.mark.parametrize(
    ("event", "status", "expected"),
    [("failed", RunStatus.FAILED, EventType.RUN_FAILED), ("paused", RunStatus.PAUSED, EventType.RUN_PAUSED)],
)
def test_failed_and_paused(event: str, status: RunStatus, expected: EventType) -> None:
    [mapped] = from_run_event(run_event(event, status, 3, "why"))
    assert mapped.type is expected and isinstance(mapped.data, RunData) and mapped.data.detail == "why"


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("started", RunStatus.RUNNING),
        ("stage-started", RunStatus.RUNNING),
        ("stage-completed", RunStatus.RUNNING),
        ("resumed", RunStatus.RUNNING),
        ("cancelled", RunStatus.CANCELLED),
        ("budget", RunStatus.RUNNING),  # the halt notice; the run's end comes as "completed" later
        ("item-failures", RunStatus.RUNNING),
    ],
)
def test_other_lifecycle_events_notify_nobody(event: str, status: RunStatus) -> None:
    assert from_run_event(run_event(event, status, 2)) == []


def test_a_redelivered_message_maps_to_the_same_event_ids() -> None:
    ev = run_event("completed", RunStatus.COMPLETED, 7, "run completed: 2 drafts ready for review")
    again = RunEvent.model_validate_json(ev.model_dump_json())
    assert [e.id for e in from_run_event(ev)] == [e.id for e in from_run_event(again)]
    other = run_event("completed", RunStatus.COMPLETED, 7, "run completed: 2 drafts ready for review")
    assert not {e.id for e in from_run_event(ev)} & {e.id for e in from_run_event(other)}


def test_payload_round_trips_through_json() -> None:
    [event] = from_run_event(run_event("paused", RunStatus.PAUSED, 2))
    assert WebhookEvent.model_validate_json(event.model_dump_json()) == event


def test_run_and_rule_events_are_the_sources() -> None:
    assert [(s.topic, s.model) for s in SOURCES] == [(RUN_EVENTS, RunEvent), (RULE_EVENTS, RuleExecuted)]
