"""Conditions of a rule, all of which must hold (seed 003 operators: eq ne gt gte lt lte in contains)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.rules.schemas import Condition, ConditionOutcome


def holds(condition: Condition, fields: Mapping[str, Any]) -> bool:
    """A field missing from the event, or a comparison between incomparable values, does not hold."""
    if condition.field not in fields:
        return False
    actual, expected, op = fields[condition.field], condition.value, condition.operator
    try:
        if op == "eq":
            return bool(actual == expected)
        if op == "ne":
            return bool(actual != expected)
        if op == "in":
            return isinstance(expected, list) and actual in expected
        if op == "contains":
            if isinstance(actual, str) and isinstance(expected, str):
                return expected.casefold() in actual.casefold()
            return isinstance(actual, list) and expected in actual
        if actual is None or expected is None or isinstance(actual, bool) != isinstance(expected, bool):
            return False
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        if op == "lte":
            return bool(actual <= expected)
    except TypeError:  # "abc" > 3
        return False
    raise AssertionError(f"operator {op!r} is validated away")


def evaluate(conditions: list[Condition], fields: Mapping[str, Any]) -> list[ConditionOutcome]:
    return [ConditionOutcome(condition=c, holds=holds(c, fields), actual=fields.get(c.field)) for c in conditions]


def all_hold(conditions: list[Condition], fields: Mapping[str, Any]) -> bool:
    return all(holds(c, fields) for c in conditions)
