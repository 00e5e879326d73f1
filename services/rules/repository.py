"""SQL of the rules service: rules and scheduled tasks. Reads a caller asks for take the caller's account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Rule, ScheduledTask, Site


async def site_account(session: AsyncSession, account_id: str, site_id: str) -> bool:
    found = await session.scalar(select(Site.id).where(Site.id == site_id, Site.account_id == account_id))
    return found is not None


async def get_rule(session: AsyncSession, account_id: str, rule_id: str, *, lock: bool = False) -> Rule | None:
    stmt = select(Rule).where(Rule.id == rule_id, Rule.account_id == account_id)
    return await session.scalar(stmt.with_for_update() if lock else stmt)


async def lock_rule(session: AsyncSession, rule_id: str) -> Rule | None:
    """The engine's own lock on a rule it holds a task of: serialises its daily counter over all replicas."""
    return await session.scalar(select(Rule).where(Rule.id == rule_id).with_for_update())


async def list_rules(session: AsyncSession, account_id: str, site_id: str) -> list[Rule]:
    stmt = select(Rule).where(Rule.account_id == account_id, Rule.site_id == site_id).order_by(Rule.created_at, Rule.id)
    return list((await session.scalars(stmt)).all())


async def active_rules_for(session: AsyncSession, site_id: str, trigger: str) -> list[Rule]:
    stmt = select(Rule).where(Rule.site_id == site_id, Rule.trigger == trigger, Rule.is_active.is_(True))
    return list((await session.scalars(stmt.order_by(Rule.id))).all())


async def active_triggers(session: AsyncSession, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (site id, trigger) pairs among `wanted` that at least one active rule has."""
    if not wanted:
        return set()
    stmt = (
        select(Rule.site_id, Rule.trigger)
        .where(Rule.is_active.is_(True), tuple_(Rule.site_id, Rule.trigger).in_(sorted(wanted)))
        .distinct()
    )
    return {(r.site_id, r.trigger) for r in await session.execute(stmt)}


async def delete_rule(session: AsyncSession, account_id: str, rule_id: str) -> bool:
    row = await get_rule(session, account_id, rule_id, lock=True)
    if row is None:
        return False
    await session.delete(row)
    return True


async def add_task(
    session: AsyncSession,
    rule: Rule,
    trigger: str,
    event_key: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> int | None:
    """A pending task; None when this (rule, event) already has one (a redelivered event, a second scheduler)."""
    stmt = (
        insert(ScheduledTask)
        .values(
            account_id=rule.account_id,
            site_id=rule.site_id,
            rule_id=rule.id,
            trigger=trigger,
            event_key=event_key,
            payload=payload,
            scheduled_at=now,
            status="pending",
            result={},
            credits_used=0,
            attempts=0,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_scheduled_tasks_rule_event")
        .returning(ScheduledTask.id)
    )
    return await session.scalar(stmt)


async def rule_of_task(session: AsyncSession, task_id: int) -> str | None:
    return await session.scalar(select(ScheduledTask.rule_id).where(ScheduledTask.id == task_id))


async def claim_pending(session: AsyncSession, task_id: int) -> ScheduledTask | None:
    """The task, locked, if it is still pending and no one else holds it."""
    stmt = (
        select(ScheduledTask)
        .where(ScheduledTask.id == task_id, ScheduledTask.status == "pending")
        .with_for_update(skip_locked=True)
    )
    return await session.scalar(stmt)


async def due_pending(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    stmt = (
        select(ScheduledTask.id)
        .where(ScheduledTask.status == "pending", ScheduledTask.next_attempt_at <= now)
        .order_by(ScheduledTask.next_attempt_at, ScheduledTask.id)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def running_tasks(session: AsyncSession, limit: int) -> list[ScheduledTask]:
    stmt = (
        select(ScheduledTask)
        .where(ScheduledTask.status == "running")
        .order_by(ScheduledTask.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(stmt)).all())


async def claim_due_schedule(session: AsyncSession, now: datetime) -> Rule | None:
    """One active schedule rule whose cron instant has come, locked; replicas skip each other's."""
    stmt = (
        select(Rule)
        .where(Rule.trigger == "schedule", Rule.is_active.is_(True), Rule.next_fire_at <= now)
        .order_by(Rule.next_fire_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return await session.scalar(stmt)


async def latest_payload(session: AsyncSession, rule_id: str) -> dict[str, Any] | None:
    stmt = (
        select(ScheduledTask.payload)
        .where(ScheduledTask.rule_id == rule_id, ScheduledTask.event_key.is_not(None))
        .order_by(ScheduledTask.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def get_task(session: AsyncSession, account_id: str, task_id: int) -> ScheduledTask | None:
    return await session.scalar(
        select(ScheduledTask).where(ScheduledTask.id == task_id, ScheduledTask.account_id == account_id)
    )


async def list_tasks(
    session: AsyncSession,
    account_id: str,
    site_id: str,
    rule_id: str | None,
    status: str | None,
    offset: int,
    limit: int,
) -> tuple[list[ScheduledTask], int]:
    where = [ScheduledTask.account_id == account_id, ScheduledTask.site_id == site_id]
    if rule_id is not None:
        where.append(ScheduledTask.rule_id == rule_id)
    if status is not None:
        where.append(ScheduledTask.status == status)
    total = await session.scalar(select(func.count()).select_from(ScheduledTask).where(*where))
    rows = await session.scalars(
        select(ScheduledTask).where(*where).order_by(ScheduledTask.id.desc()).offset(offset).limit(limit)
    )
    return list(rows.all()), int(total or 0)


async def touch_rule(session: AsyncSession, rule_id: str, now: datetime) -> None:
    await session.execute(update(Rule).where(Rule.id == rule_id).values(updated_at=now))
