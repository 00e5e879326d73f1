"""Executing one scheduled task, in the seed's order, in one transaction.

Lock order: the rule (FOR UPDATE: the daily counter is read and bumped by one transaction at a time over all
replicas), then the task (SKIP LOCKED: one held by another replica is left alone). A site with an active run keeps
the task pending and retries it later; everything else settles it: skipped with the seed's reason, running
(its targeted run started in this same transaction, so a crash never leaves one without the other), completed
(no run to wait for), or failed. The outcome goes out on the outbox in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.config import RunTarget
from services.orchestrator.errors import InsufficientCreditsError
from services.orchestrator.runs.service import RunService, SiteBusyError
from services.orchestrator.runs.start import NothingPendingError
from services.orchestrator.sites import service as sites
from services.rules import repository as repo
from services.rules.conditions import all_hold
from services.rules.schemas import Action, Condition, GenerateContent, GenerateIdeas, Notify, StartRun
from shared.db.models import Rule, ScheduledTask
from shared.delivery import Outbox
from shared.rule_events import RuleExecuted
from shared.topics import RULE_EVENTS

log = logging.getLogger(__name__)

# The seed's reasons, verbatim.
INACTIVE = "Rule is inactive"
LIMIT_REACHED = "Execution limit reached"
INSUFFICIENT_CREDITS = "Insufficient credits"
CONDITIONS_NOT_MET = "Conditions not met"

MANUAL = "manual"
CONDITIONS = TypeAdapter(list[Condition])
ACTIONS = TypeAdapter(list[Action])


class NothingToTarget(Exception):
    """An action that names no items and has no triggering event to take them from."""


def run_target(actions: list[Action], rule: Rule, payload: dict[str, Any]) -> tuple[bool, RunTarget | None]:
    """(whether an action starts a run, the run's target: None = everything pending of the site)."""
    reason = f"rule {rule.name}"[:200]
    for action in actions:
        if isinstance(action, GenerateIdeas):
            ids = action.cluster_ids or ([int(payload["id"])] if rule.trigger == "cluster_created" and payload else [])
            if not ids:
                raise NothingToTarget("generate_ideas has no cluster_ids and no triggering cluster_created event")
            return True, RunTarget(stage=2, item_ids=ids, stages=[2], reason=reason)
        if isinstance(action, GenerateContent):
            ids = action.task_ids or ([int(payload["id"])] if rule.trigger == "task_created" and payload else [])
            if not ids:
                raise NothingToTarget("generate_content has no task_ids and no triggering task_created event")
            return True, RunTarget(stage=4, item_ids=ids, stages=[4], reason=reason)
        if isinstance(action, StartRun):
            return True, None
    return False, None


@dataclass(frozen=True)
class Executor:
    sessions: async_sessionmaker[AsyncSession]
    runs: RunService
    outbox: Outbox
    busy_retry: timedelta

    async def execute(self, task_id: int, now: datetime) -> str | None:
        """Decide and act on a pending task; returns its status after this attempt (None: not ours now)."""
        async with self.sessions.begin() as session:
            rule_id = await repo.rule_of_task(session, task_id)
            # The rule first, like every path that locks both (a rule's deletion cascades to its tasks).
            rule = await repo.lock_rule(session, rule_id) if rule_id is not None else None
            task = await repo.claim_pending(session, task_id) if rule is not None else None
            if rule is None or task is None:  # deleted, decided, or held by another replica
                return None
            status = await self._decide(session, task, rule, now)
        self.outbox.committed()
        self.runs.committed()
        return status

    async def _decide(self, session: AsyncSession, task: ScheduledTask, rule: Rule, now: datetime) -> str:
        config = await sites.site_config(session, rule.site_id)
        today = now.astimezone(ZoneInfo(config.timezone)).date()
        if rule.executions_day != today:  # midnight in the site's time zone has passed: a new day's count
            rule.executions_day, rule.executions_today = today, 0
        task.attempts += 1
        task.executed_at = now
        actions = ACTIONS.validate_python(rule.actions)
        if not rule.is_active:
            return self._skip(session, task, rule, INACTIVE)
        if rule.executions_today >= rule.max_executions_per_day:
            return self._skip(
                session, task, rule, LIMIT_REACHED, f"{rule.executions_today} of {rule.max_executions_per_day} today"
            )
        try:
            needs_run, target = run_target(actions, rule, task.payload)
        except NothingToTarget as exc:
            return self._settle(session, task, rule, "failed", str(exc))
        limit = Decimal(rule.credit_limit_per_execution)
        estimate = Decimal(0)
        if needs_run:
            # Uncapped: the engine's estimate never exceeds a run's cap, and the limit is what it is checked against.
            estimate = await self.runs.estimate_within(session, rule.site_id, target, None)
            if estimate > limit:
                return self._skip(
                    session, task, rule, INSUFFICIENT_CREDITS, f"estimate {estimate} exceeds the rule's limit {limit}"
                )
        # "Execute now" is the person's own decision: conditions are for events (and have no event to test).
        if task.trigger != MANUAL and not all_hold(CONDITIONS.validate_python(rule.conditions), task.payload):
            return self._skip(session, task, rule, CONDITIONS_NOT_MET)
        result: dict[str, Any] = {"actions": [a.type for a in actions], "estimate": str(estimate)}
        if needs_run:
            try:
                task.run_id = await self.runs.start_within(session, rule.site_id, target, "rule", limit)
            except NothingPendingError as exc:  # e.g. the cluster has its ideas already: nothing to execute
                return self._skip(session, task, rule, f"Nothing pending: {exc.detail}")
            except SiteBusyError:
                # The site is busy: the execution waits (pending) and is tried again; it is not lost.
                task.next_attempt_at, task.executed_at = now + self.busy_retry, None
                task.result = result | {"waiting": "the site has an active run"}
                return "pending"
            except InsufficientCreditsError as exc:
                return self._skip(session, task, rule, INSUFFICIENT_CREDITS, exc.detail)
            result["run_id"] = task.run_id
        rule.executions_today += 1
        rule.last_executed_at = now
        task.result = result
        status = "running" if needs_run else "completed"
        task.status = status
        notify = next((a.message for a in actions if isinstance(a, Notify)), None)
        self._announce(session, task, rule, "executed", "", [a.type for a in actions], notify)
        return status

    def _skip(self, session: AsyncSession, task: ScheduledTask, rule: Rule, reason: str, detail: str = "") -> str:
        task.status, task.error_message = "skipped", reason
        task.result = {"reason": reason} | ({"detail": detail} if detail else {})
        self._announce(session, task, rule, "skipped", reason, [], None)
        return "skipped"

    def _settle(self, session: AsyncSession, task: ScheduledTask, rule: Rule, status: str, error: str) -> str:
        task.status, task.error_message = status, error[:2000]
        self._announce(session, task, rule, "failed", error, [], None)
        return status

    def _announce(
        self,
        session: AsyncSession,
        task: ScheduledTask,
        rule: Rule,
        outcome: Literal["executed", "skipped", "failed"],
        reason: str,
        actions: list[str],
        notify: str | None,
    ) -> None:
        event = RuleExecuted(
            account_id=rule.account_id,
            site_id=rule.site_id,
            rule_id=rule.id,
            rule_name=rule.name,
            task_id=task.id,
            trigger=task.trigger,
            outcome=outcome,
            reason=reason[:2000],
            run_id=task.run_id,
            actions=actions,
            notify_message=notify,
        )
        self.outbox.add(session, RULE_EVENTS, rule.site_id, event)
