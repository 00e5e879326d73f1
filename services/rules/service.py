"""The rules service interface (no Kafka here): rules CRUD, executions, tests, the scheduled-task history, and
the three inputs of the engine: entity events, due cron instants, and the periodic pass over pending and
running tasks. Account-scoped methods take the caller's account; another account's id is simply not found.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import NotFoundError
from services.orchestrator.runs.service import RunService
from services.rules import repository as repo
from services.rules.conditions import all_hold, evaluate
from services.rules.cron import next_fire
from services.rules.execution import (
    ACTIONS,
    CONDITIONS,
    CONDITIONS_NOT_MET,
    INACTIVE,
    LIMIT_REACHED,
    MANUAL,
    Executor,
)
from services.rules.schemas import (
    RuleSpec,
    RuleTestResult,
    RuleUpdate,
    RuleView,
    Schedule,
    TaskPage,
    TaskStatus,
    TaskView,
    Trigger,
)
from shared.contracts import utcnow
from shared.db.models import Rule, ScheduledTask
from shared.delivery import Outbox
from shared.entity_events import EntityEvent

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 200
TERMINAL_RUN = {"completed": "completed", "failed": "failed", "cancelled": "failed"}


def rule_view(row: Rule) -> RuleView:
    schedule = Schedule(cron=row.schedule_cron, timezone=row.schedule_timezone or "UTC") if row.schedule_cron else None
    return RuleView(
        id=row.id,
        site_id=row.site_id,
        name=row.name,
        description=row.description,
        trigger=Trigger(row.trigger),
        conditions=CONDITIONS.validate_python(row.conditions),
        actions=ACTIONS.validate_python(row.actions),
        schedule=schedule,
        next_fire_at=row.next_fire_at,
        is_active=row.is_active,
        max_executions_per_day=row.max_executions_per_day,
        credit_limit_per_execution=row.credit_limit_per_execution,
        executions_today=row.executions_today,
        last_executed_at=row.last_executed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def task_view(row: ScheduledTask) -> TaskView:
    return TaskView(
        id=row.id,
        rule_id=row.rule_id,
        site_id=row.site_id,
        trigger=row.trigger,
        status=TaskStatus(row.status),
        scheduled_at=row.scheduled_at,
        executed_at=row.executed_at,
        result=row.result,
        error_message=row.error_message,
        credits_used=row.credits_used,
        run_id=row.run_id,
        attempts=row.attempts,
    )


def spec_of(row: Rule) -> RuleSpec:
    view = rule_view(row)
    return RuleSpec.model_validate(view.model_dump(include=set(RuleSpec.model_fields)))


def apply_spec(row: Rule, spec: RuleSpec, now: datetime) -> None:
    row.name, row.description, row.trigger = spec.name, spec.description, spec.trigger.value
    row.conditions = [c.model_dump(mode="json") for c in spec.conditions]
    row.actions = [a.model_dump(mode="json") for a in spec.actions]
    row.schedule_cron = spec.schedule.cron if spec.schedule else None
    row.schedule_timezone = spec.schedule.timezone if spec.schedule else None
    row.next_fire_at = next_fire(spec.schedule.cron, spec.schedule.timezone, now) if spec.schedule else None
    row.is_active = spec.is_active
    row.max_executions_per_day = spec.max_executions_per_day
    row.credit_limit_per_execution = spec.credit_limit_per_execution
    row.updated_at = now


class RuleService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        runs: RunService,
        outbox: Outbox,
        busy_retry_seconds: float = 10.0,
    ) -> None:
        self._sessions = sessions
        self._runs = runs
        self._executor = Executor(sessions, runs, outbox, timedelta(seconds=busy_retry_seconds))

    # ------------------------------------------------------------------ rules
    async def create_rule(self, account_id: str, site_id: str, spec: RuleSpec, now: datetime | None = None) -> RuleView:
        now = now or utcnow()
        row = Rule(id="rule_" + uuid.uuid4().hex[:20], account_id=account_id, site_id=site_id, executions_today=0)
        apply_spec(row, spec, now)
        async with self._sessions.begin() as session:
            if not await repo.site_account(session, account_id, site_id):
                raise NotFoundError(f"site {site_id!r} does not exist")
            session.add(row)
            await session.flush()
            await session.refresh(row)
        return rule_view(row)

    async def list_rules(self, account_id: str, site_id: str) -> list[RuleView]:
        async with self._sessions() as session:
            if not await repo.site_account(session, account_id, site_id):
                raise NotFoundError(f"site {site_id!r} does not exist")
            return [rule_view(r) for r in await repo.list_rules(session, account_id, site_id)]

    async def get_rule(self, account_id: str, rule_id: str) -> RuleView:
        async with self._sessions() as session:
            return rule_view(await self._rule(session, account_id, rule_id))

    async def update_rule(self, account_id: str, rule_id: str, patch: RuleUpdate) -> RuleView:
        """Raises pydantic's ValidationError when the merged rule is not valid (the router answers 422)."""
        now = utcnow()
        async with self._sessions.begin() as session:
            row = await self._rule(session, account_id, rule_id, lock=True)
            merged = spec_of(row).model_dump() | patch.model_dump(exclude_unset=True)
            if (
                patch.trigger is not None
                and patch.trigger is not Trigger.SCHEDULE
                and "schedule" not in patch.model_fields_set
            ):
                merged["schedule"] = None  # leaving `schedule` drops the cron
            spec = RuleSpec.model_validate(merged)
            apply_spec(row, spec, now)
        return rule_view(row)

    async def delete_rule(self, account_id: str, rule_id: str) -> None:
        """Deletes the rule with its scheduled-task history; runs it started go on."""
        async with self._sessions.begin() as session:
            if not await repo.delete_rule(session, account_id, rule_id):
                raise NotFoundError(f"rule {rule_id!r} does not exist")

    # ------------------------------------------------------------------ executions
    async def execute_now(self, account_id: str, rule_id: str, now: datetime | None = None) -> TaskView:
        """A manual execution: a task of its own (never deduplicated), decided at once like any other."""
        now = now or utcnow()
        async with self._sessions.begin() as session:
            rule = await self._rule(session, account_id, rule_id)
            payload = await repo.latest_payload(session, rule.id) or {}
            task_id = await repo.add_task(session, rule, MANUAL, None, payload, now)
        assert task_id is not None  # a NULL event key never conflicts
        await self._executor.execute(task_id, now)
        return await self.get_task(account_id, task_id)

    async def test_rule(self, account_id: str, rule_id: str, sample: dict[str, Any] | None) -> RuleTestResult:
        """Evaluate the conditions against `sample` (or the rule's latest event); nothing is executed."""
        async with self._sessions() as session:
            rule = await self._rule(session, account_id, rule_id)
            latest = None if sample is not None else await repo.latest_payload(session, rule.id)
        source = "given" if sample is not None else "latest_event" if latest is not None else "none"
        fields = sample if sample is not None else latest or {}
        conditions = CONDITIONS.validate_python(rule.conditions)
        met = all_hold(conditions, fields)
        why = (
            INACTIVE
            if not rule.is_active
            else LIMIT_REACHED
            if rule.executions_today >= rule.max_executions_per_day and rule.executions_day == utcnow().date()
            else None
            if met
            else CONDITIONS_NOT_MET
        )
        return RuleTestResult(
            rule_id=rule.id,
            sample_source=source,
            sample=fields,
            conditions_met=met,
            conditions=evaluate(conditions, fields),
            would_skip_because=why,
        )

    async def get_task(self, account_id: str, task_id: int) -> TaskView:
        async with self._sessions() as session:
            row = await repo.get_task(session, account_id, task_id)
        if row is None:
            raise NotFoundError(f"scheduled task {task_id} does not exist")
        return task_view(row)

    async def list_tasks(
        self,
        account_id: str,
        site_id: str,
        rule_id: str | None = None,
        status: TaskStatus | None = None,
        page: int = 1,
        size: int = 50,
    ) -> TaskPage:
        """The site's scheduled tasks, newest first, optionally of one rule and/or in one status."""
        if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page must be >= 1 and size between 1 and {MAX_PAGE_SIZE}")
        async with self._sessions() as session:
            if not await repo.site_account(session, account_id, site_id):
                raise NotFoundError(f"site {site_id!r} does not exist")
            if rule_id is not None and await repo.get_rule(session, account_id, rule_id) is None:
                raise NotFoundError(f"rule {rule_id!r} does not exist")
            rows, total = await repo.list_tasks(
                session, account_id, site_id, rule_id, status.value if status else None, (page - 1) * size, size
            )
        return TaskPage(items=[task_view(r) for r in rows], page=page, size=size, total=total)

    # ------------------------------------------------------------------ the engine's inputs
    async def concerning_a_rule(self, events: list[EntityEvent]) -> list[bool]:
        """Per event, whether an active rule of its site has its trigger. Most events find none (an import sends
        one per keyword): they are settled by one read for the whole batch instead of a counted attempt's three
        transactions each, so that a large import does not take the run's CPU on a small machine. All True when
        the read fails: the counted path then deals with the outage."""
        pairs = {(e.site_id, e.event_type.value) for e in events}
        try:
            async with self._sessions() as session:
                active = await repo.active_triggers(session, pairs)
        except Exception:
            log.warning("could not look up rules for %d events; handling them the long way", len(events), exc_info=True)
            return [True] * len(events)
        return [(e.site_id, e.event_type.value) in active for e in events]

    async def on_entity_event(self, event: EntityEvent, now: datetime | None = None) -> list[int]:
        """A pending task per active rule of the site with this trigger, at most once per (rule, event), then
        each decided; returns the ids of the tasks this delivery created (none for a redelivered event)."""
        now = now or utcnow()
        async with self._sessions.begin() as session:
            rules = await repo.active_rules_for(session, event.site_id, event.event_type.value)
            created = []
            for rule in rules:
                if rule.account_id != event.account_id:  # an event naming a site of another account
                    log.warning(
                        "event %s: site %s is not of account %s", event.message_id, event.site_id, event.account_id
                    )
                    continue
                task_id = await repo.add_task(
                    session, rule, event.event_type.value, event.message_id, event.data.fields(), now
                )
                if task_id is not None:
                    created.append(task_id)
        for task_id in created:
            await self._executor.execute(task_id, now)
        return created

    async def fire_due_schedules(self, now: datetime | None = None) -> list[int]:
        """Tasks for schedule rules whose cron instant has come: one per (rule, instant) whichever replica fires
        it; an instant missed while nothing ran fires once, then the rule moves to its next future instant."""
        now = now or utcnow()
        created = []
        while True:
            async with self._sessions.begin() as session:
                rule = await repo.claim_due_schedule(session, now)
                if rule is None:
                    break
                assert rule.next_fire_at is not None and rule.schedule_cron is not None
                instant = rule.next_fire_at
                task_id = await repo.add_task(session, rule, "schedule", f"cron:{instant.isoformat()}", {}, now)
                rule.next_fire_at = next_fire(rule.schedule_cron, rule.schedule_timezone or "UTC", max(now, instant))
                if task_id is not None:
                    created.append(task_id)
        for task_id in created:
            await self._executor.execute(task_id, now)
        return created

    async def retry_pending(self, now: datetime | None = None, limit: int = 100) -> int:
        """Decide due pending tasks (a busy site's, or one whose replica died before deciding it)."""
        now = now or utcnow()
        async with self._sessions() as session:
            due = await repo.due_pending(session, now, limit)
        for task_id in due:
            await self._executor.execute(task_id, now)
        return len(due)

    async def settle_running(self, limit: int = 100) -> int:
        """Tasks whose run has ended take its outcome and the credits it used."""
        settled = 0
        async with self._sessions.begin() as session:
            for task in await repo.running_tasks(session, limit):
                if task.run_id is None:
                    task.status = "completed"
                    continue
                try:
                    run = await self._runs.run(task.account_id, task.run_id)
                except NotFoundError:
                    task.status, task.error_message = "failed", f"run {task.run_id} no longer exists"
                    continue
                if run.status not in TERMINAL_RUN:
                    continue
                task.status = TERMINAL_RUN[run.status]
                task.credits_used = run.total_credits_used
                task.result = task.result | {"run_status": run.status, "stopped_reason": run.stopped_reason}
                if task.status == "failed":
                    task.error_message = f"run {run.run_id} {run.status}: {run.error_message or ''}".strip()[:2000]
                settled += 1
        return settled

    async def tick(self, now: datetime | None = None) -> None:
        for name, step in (
            ("schedules", self.fire_due_schedules),
            ("pending", self.retry_pending),
        ):
            try:
                await step(now)
            except Exception:  # the DB may be briefly away; the next tick tries again
                log.exception("rules %s step failed", name)
        try:
            await self.settle_running()
        except Exception:
            log.exception("rules settle step failed")

    # ------------------------------------------------------------------ helpers
    async def _rule(self, session: AsyncSession, account_id: str, rule_id: str, *, lock: bool = False) -> Rule:
        row = await repo.get_rule(session, account_id, rule_id, lock=lock)
        if row is None:
            raise NotFoundError(f"rule {rule_id!r} does not exist")
        return row
