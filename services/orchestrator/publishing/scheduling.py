"""The schedule's moves inside the caller's transaction: give drafts slots (or the reason they get none),
hand due drafts to the publisher, try waiting drafts again.

Slot assignment for a site happens with the site's `publishing_settings` row locked (FOR UPDATE): two
orchestrator replicas, the review API and the ticker take turns per site, and each sees the slots the other
committed. The partial unique index on (site_id, scheduled_publish_at) for scheduled rows backs that up.
Handing over claims due rows with SKIP LOCKED and puts the PublishCommand on the outbox in the same
transaction, so a due draft goes to the publisher once, however many replicas tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.publishing import repository as repo
from services.orchestrator.publishing.settings import PublishingSettings
from services.orchestrator.publishing.slots import Planner, Unschedulable
from services.orchestrator.sites import service as sites
from shared.contracts import PublishCommand
from shared.db.models import ScheduledPublication
from shared.delivery import Outbox
from shared.settings import Settings
from shared.topics import PUBLISH_COMMANDS

REVIEW_STAGE = 7  # publishing lines go to the run's activity with the review gate
# Bookings this far back still count towards the month's and week's targets.
TARGET_LOOKBACK = timedelta(days=32)
RETRY_FIRST = timedelta(seconds=60)
RETRY_MAX = timedelta(hours=1)
NO_CONNECTION = "no_connection"
AUTO_PUBLISH_OFF = "auto_publish_off"
HELD = "held"  # unscheduled by a person: only a person brings it back
# Reasons a draft waits for that a later try may find gone (everything but HELD).
WAITING_CODES = ("queue_full", "no_free_slot", "no_allowed_day", NO_CONNECTION, AUTO_PUBLISH_OFF)


@dataclass(frozen=True)
class Policy:
    """Process-wide knobs of the schedule (from shared.settings, not per site)."""

    spacing: timedelta = timedelta(seconds=60)

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(spacing=timedelta(seconds=settings.publish_immediate_spacing_seconds))


@dataclass
class Assigned:
    scheduled: list[ScheduledPublication]
    waiting: list[ScheduledPublication]


def local_text(at: datetime, timezone: str) -> str:
    return at.astimezone(ZoneInfo(timezone)).strftime(f"%a %Y-%m-%d %H:%M {timezone}")


def retry_after(retries: int) -> timedelta:
    return min(RETRY_MAX, RETRY_FIRST * float(2 ** min(retries, 10)))


def _log(session: AsyncSession, entry: ScheduledPublication, message: str, level: str = "info") -> None:
    sites.log_line(session, entry.site_id, entry.run_id, REVIEW_STAGE, message, level)


async def site_settings(session: AsyncSession, site_id: str, lock: bool = False) -> PublishingSettings:
    return PublishingSettings.model_validate((await repo.settings_row(session, site_id, lock=lock)).settings)


async def _site_wide_reason(
    session: AsyncSession, site_id: str, settings: PublishingSettings, by: str
) -> tuple[str, str] | None:
    """Why none of the site's drafts can get a slot now, if so: (code, reason)."""
    if by == "auto" and not settings.auto_publish_enabled:
        return AUTO_PUBLISH_OFF, "auto_publish_enabled is off: schedule it or publish it now by hand"
    if not await repo.has_connection(session, site_id):
        return NO_CONNECTION, "the site has no WordPress connection (PUT /sites/{site_id}/wordpress)"
    return None


def _wait(entry: ScheduledPublication, code: str, reason: str, now: datetime, retry: bool) -> bool:
    """Mark the entry unscheduled with its reason; True when the reason is new (worth a log line)."""
    changed = (entry.state, entry.reason_code, entry.reason) != ("unscheduled", code, reason)
    entry.state, entry.scheduled_publish_at, entry.reason, entry.reason_code = "unscheduled", None, reason, code
    entry.retry_at = now + retry_after(entry.retries) if retry else None
    entry.retries = entry.retries + 1 if retry else 0
    entry.updated_at = now
    return changed


async def assign(
    session: AsyncSession,
    site_id: str,
    drafts: Sequence[tuple[int, str | None]],
    now: datetime,
    policy: Policy,
    by: str = "auto",
) -> Assigned:
    """Give each (draft id, run id) a slot of the site's mode, in order, or record why it has none.

    Takes the site's lock. Drafts already handed to the publisher (or published) are left as they are.
    """
    row = await repo.settings_row(session, site_id, lock=True)
    settings = PublishingSettings.model_validate(row.settings)
    existing = await repo.entries(session, [d for d, _ in drafts])
    todo: list[ScheduledPublication] = []
    for draft_id, run_id in drafts:
        entry = existing.get(draft_id)
        if entry is None:
            entry = ScheduledPublication(
                draft_id=draft_id, site_id=site_id, run_id=run_id, state="unscheduled", scheduled_by=by, retries=0,
                attempts=0, created_at=now,
            )  # fmt: skip
            session.add(entry)
        elif entry.state != "unscheduled":
            continue  # it has its slot, or the publisher has it
        todo.append(entry)
    out = Assigned([], [])
    if not todo:
        return out
    blocked = await _site_wide_reason(session, site_id, settings, by)
    if blocked is not None:
        code, reason = blocked
        for entry in todo:
            # No polling for these: making a connection or changing the settings brings the next try forward.
            if _wait(entry, code, reason, now, retry=False):
                _log(session, entry, f"draft {entry.draft_id} not scheduled: {reason}", "warning")
            out.waiting.append(entry)
        await session.flush()
        return out
    planner = await planner_for(session, site_id, settings, now, policy)
    # Scanning up to 90 days of slots for many drafts is CPU work: off the event loop.
    slots = await asyncio.to_thread(planner.plan, len(todo))
    for entry, slot in zip(todo, slots, strict=True):
        if isinstance(slot, Unschedulable):
            if _wait(entry, slot.code, slot.reason, now, retry=True):
                _log(session, entry, f"draft {entry.draft_id} not scheduled: {slot.reason}", "warning")
            out.waiting.append(entry)
            continue
        entry.state, entry.scheduled_publish_at, entry.scheduled_by = "scheduled", slot, by
        entry.reason = entry.reason_code = entry.retry_at = None
        entry.retries, entry.updated_at = 0, now
        _log(
            session, entry,
            f"draft {entry.draft_id} scheduled for {local_text(slot, planner.timezone)} ({settings.scheduling_mode})",
        )  # fmt: skip
        out.scheduled.append(entry)
    await session.flush()
    return out


async def planner_for(
    session: AsyncSession, site_id: str, settings: PublishingSettings, now: datetime, policy: Policy,
    leave_out: int | None = None,
) -> Planner:
    """A planner that knows what the site's schedule holds (`leave_out`: a draft being moved, its slot free)."""
    timezone = (await sites.site_config(session, site_id)).timezone
    booked = await repo.booked_instants(session, site_id, now - TARGET_LOOKBACK, leave_out)
    queued = await repo.queued(session, site_id, leave_out)
    return Planner(settings, timezone, now, booked, queued, policy.spacing)


def hand_over(
    session: AsyncSession, outbox: Outbox, entry: ScheduledPublication, account_id: str, now: datetime, why: str
) -> PublishCommand:
    """The entry goes to the publisher: a PublishCommand on the outbox, in the caller's transaction."""
    entry.attempts += 1
    cmd = PublishCommand(
        account_id=account_id,
        site_id=entry.site_id,
        draft_id=entry.draft_id,
        run_id=entry.run_id,
        attempt=entry.attempts,
        scheduled_for=entry.scheduled_publish_at,
    )
    outbox.add(session, PUBLISH_COMMANDS, entry.site_id, cmd)
    entry.state, entry.command_id, entry.handed_at, entry.updated_at = "publishing", cmd.message_id, now, now
    entry.reason = entry.reason_code = entry.retry_at = None
    _log(session, entry, f"draft {entry.draft_id} handed to the publisher ({why})")
    return cmd


async def hand_over_due(session: AsyncSession, outbox: Outbox, now: datetime, limit: int) -> int:
    """Claim up to `limit` due drafts (SKIP LOCKED) and hand each to the publisher; returns how many."""
    claimed = await repo.claim_due(session, now, limit)
    for entry, account_id in claimed:
        due = entry.scheduled_publish_at
        hand_over(session, outbox, entry, account_id, now, f"due {due:%Y-%m-%d %H:%M:%S} UTC" if due else "due")
    for site_id in {entry.site_id for entry, _ in claimed}:  # room in the queue: waiting drafts may fit now
        await repo.retry_now(session, site_id, now, codes=["queue_full"])
    await session.flush()
    return len(claimed)


async def retry_site(session: AsyncSession, site_id: str, now: datetime, policy: Policy) -> Assigned:
    """Try the site's waiting drafts for a slot again (the ticker, when their next try is due)."""
    await repo.settings_row(session, site_id, lock=True)  # the site's lock before its rows
    rows = await repo.waiting(session, site_id)
    return await assign(session, site_id, [(r.draft_id, r.run_id) for r in rows], now, policy)
