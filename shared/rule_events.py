"""Rule executions (issue 15): the rules service announces each finished execution on
`contentline.rules.events` (keyed by site, through its outbox, in the transaction that settles the
scheduled-task row). The webhooks service turns them into `rule.executed` / `rule.skipped` deliveries.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.contracts import Message


class RuleExecuted(Message):
    """One scheduled task of a rule ended: it acted (`executed`, with what it started), or did not (`skipped`,
    with the seed's reason: `Rule is inactive`, `Execution limit reached`, `Insufficient credits`,
    `Conditions not met`), or an action failed (`failed`, with the error)."""

    schema_version: Literal[1] = 1
    account_id: str = Field(min_length=1, max_length=64)
    site_id: str = Field(min_length=1, max_length=64)
    rule_id: str = Field(min_length=1, max_length=64)
    rule_name: str = Field(max_length=200)
    task_id: int = Field(ge=1)  # the scheduled-task row
    trigger: str = Field(max_length=40)  # schedule | manual | an entity event type
    outcome: Literal["executed", "skipped", "failed"]
    reason: str = Field(default="", max_length=2000)
    run_id: str | None = None  # the targeted run an action started
    actions: list[str] = Field(default_factory=list)  # the action types that ran
    notify_message: str | None = Field(default=None, max_length=2000)  # the `notify` action's text
