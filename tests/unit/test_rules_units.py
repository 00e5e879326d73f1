"""Rules without a database: condition operators, cron instants across DST, definition validation, mapping of
rule executions to webhook events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.rules.conditions import all_hold, holds
from services.rules.cron import check_cron, next_fire
from services.rules.schemas import Condition, RuleSpec
from services.webhooks.events import EventType, RuleData
from services.webhooks.sources import from_rule_executed
from shared.entity_events import ClusterCreated, EntityEvent, entity_event
from shared.rule_events import RuleExecuted


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("eq", 5, 5, True),
        ("ne", 5, 5, False),
        ("gt", 5, 6, True),
        ("gte", 5, 5, True),
        ("lt", 5, 5, False),
        ("lte", 5, 5, True),
        ("in", ["a", "b"], "b", True),
        ("in", ["a"], "c", False),
        ("contains", "Shoe", "best running shoes", True),
        ("contains", "x", "best", False),
        ("gt", 5, None, False),  # a missing volume is no number
        ("gt", 5, "abc", False),  # incomparable: does not hold, never raises
        ("gt", 0, True, False),  # booleans are not numbers here
    ],
)
def test_operators(operator: str, value: object, actual: object, expected: bool) -> None:
    condition = Condition.model_validate({"field": "f", "operator": operator, "value": value})
    assert holds(condition, {"f": actual}) is expected


def test_all_conditions_must_hold_and_a_missing_field_does_not() -> None:
    conditions = [Condition(field="size", operator="gte", value=3), Condition(field="intent", operator="eq", value="x")]
    assert all_hold(conditions, {"size": 3, "intent": "x"})
    assert not all_hold(conditions, {"size": 3})
    assert all_hold([], {})


def test_cron_in_the_rules_time_zone_keeps_wall_clock_time_over_dst() -> None:
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # Berlin switches to CEST on 29 March 2026
    first = next_fire("0 9 * * *", "Europe/Berlin", before)
    second = next_fire("0 9 * * *", "Europe/Berlin", first)
    assert first == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert second == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert next_fire("0 9 * * *", "Europe/Berlin", datetime(2026, 1, 5, 12, tzinfo=UTC)).hour == 8  # CET
    for bad in ("* * * *", "0 0 30 2 *", "61 * * * *", "@daily"):
        with pytest.raises(ValueError, match="cron"):
            check_cron(bad)


def _errors(spec: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate(spec)
    return str(caught.value)


def test_definitions_name_what_is_wrong() -> None:
    base = {"name": "r", "trigger": "cluster_created", "actions": [{"type": "generate_ideas"}]}
    assert "colour" in _errors(base | {"conditions": [{"field": "colour", "operator": "eq", "value": 1}]})
    assert "launch" in _errors(base | {"actions": [{"type": "launch"}]})
    assert "needs schedule.cron" in _errors(base | {"trigger": "schedule"})
    assert "cluster_ids" in _errors(base | {"trigger": "keyword_added"})
    assert "at most one" in _errors(base | {"actions": [{"type": "generate_ideas"}, {"type": "start_run"}]})
    assert "'in' takes a list" in _errors(base | {"conditions": [{"field": "size", "operator": "in", "value": 1}]})
    spec = RuleSpec.model_validate(base)
    assert spec.max_executions_per_day == 10 and spec.credit_limit_per_execution == 100 and spec.is_active


def test_entity_events_round_trip_and_rule_outcomes_map_to_webhook_types() -> None:
    event = entity_event("acc", "site", "run", ClusterCreated(id=7, name="shoes", intent="commercial", size=5))
    again = EntityEvent.model_validate_json(event.model_dump_json())
    assert again.event_type.value == "cluster_created" and again.data.fields() == {
        "id": 7,
        "name": "shoes",
        "intent": "commercial",
        "size": 5,
    }
    common = {"account_id": "a", "site_id": "s", "rule_id": "r", "rule_name": "n", "task_id": 1, "trigger": "manual"}
    executed = RuleExecuted(**common, outcome="executed", actions=["notify"], notify_message="hi")
    skipped = RuleExecuted(**common, outcome="skipped", reason="Insufficient credits")
    [e1], [e2] = from_rule_executed(executed), from_rule_executed(skipped)
    assert isinstance(e1.data, RuleData) and isinstance(e2.data, RuleData)
    assert e1.type is EventType.RULE_EXECUTED and e1.data.message == "hi"
    assert e2.type is EventType.RULE_SKIPPED and e2.data.reason == "Insufficient credits"
    assert from_rule_executed(executed)[0].id == e1.id  # a redelivered execution maps to the same webhook id
