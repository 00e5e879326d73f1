"""Publishing's public face: settings, the queue, a person's schedule actions, the ticker's rounds, the
publisher's reports; and, for the review domain, what happens to an approved draft.

A person may schedule (next free slot, or a time of their choosing: "move"), unschedule, or publish now any
approved draft that is not with the publisher already. Publishing now hands it over in the same transaction.
Every draft id and site id is looked up through the caller's account: another account's is not found.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.publishing import repository as repo
from services.orchestrator.publishing import results
from services.orchestrator.publishing.scheduling import (
    HELD,
    WAITING_CODES,
    Assigned,
    Policy,
    assign,
    hand_over,
    hand_over_due,
    local_text,
    planner_for,
    retry_site,
    site_settings,
)
from services.orchestrator.publishing.settings import PublishingSettings, PublishingSettingsPatch
from services.orchestrator.publishing.slots import Unschedulable
from services.orchestrator.publishing.views import DraftPublishing, PublishingView, QueueEntry, SettingsOut
from services.orchestrator.sites import service as sites
from shared.contracts import PublicationStatusChanged, PublishResult, utcnow
from shared.db.models import Draft, ScheduledPublication
from shared.delivery import Outbox

log = logging.getLogger(__name__)
HAND_OVER_BATCH = 100
RETRY_SITES_PER_ROUND = 20
PUBLISHABLE_DECISIONS = ("approved", "published")  # `published`: the ArticlePublished event went out too


# ---------------------------------------------------------------------- for the review domain (its transaction)
async def settings_of(session: AsyncSession, site_id: str) -> PublishingSettings:
    return await site_settings(session, site_id)


async def on_approved(
    session: AsyncSession, site_id: str, draft_ids: Sequence[int], run_id: str | None, policy: Policy
) -> Assigned | None:
    """Approved drafts (by a person or auto-approval) get their slots when the site publishes automatically;
    None when auto_publish_enabled is off (a person schedules them, or publishes them now)."""
    if not draft_ids or not (await site_settings(session, site_id)).auto_publish_enabled:
        return None
    return await assign(session, site_id, [(d, run_id) for d in draft_ids], utcnow(), policy)


async def view_of(session: AsyncSession, draft_id: int) -> PublishingView | None:
    entry = await repo.entry(session, draft_id)
    return PublishingView.of(entry) if entry is not None else None


class PublishingService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, policy: Policy) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self.policy = policy

    # ------------------------------------------------------------------ settings and the queue
    async def get_settings(self, account_id: str, site_id: str) -> SettingsOut:
        async with self._sessions.begin() as session:
            await sites.site_of(session, account_id, site_id)
            return await self._settings_out(session, site_id)

    async def update_settings(self, account_id: str, site_id: str, patch: PublishingSettingsPatch) -> SettingsOut:
        """Raises pydantic's ValidationError when the merged settings are invalid as a whole."""
        async with self._sessions.begin() as session:
            await sites.site_of(session, account_id, site_id)
            row = await repo.settings_row(session, site_id, lock=True)
            settings = patch.apply(PublishingSettings.model_validate(row.settings))
            now = utcnow()
            row.settings, row.updated_at = settings.model_dump(mode="json"), now
            await repo.retry_now(session, site_id, now, WAITING_CODES)  # a look under the new settings
            changed = sorted(patch.model_dump(exclude_unset=True))
            sites.log_line(session, site_id, None, None, f"publishing settings updated: {changed}")
            await session.flush()
            return await self._settings_out(session, site_id)

    @staticmethod
    async def _settings_out(session: AsyncSession, site_id: str) -> SettingsOut:
        row = await repo.settings_row(session, site_id)
        return SettingsOut(
            site_id=site_id,
            timezone=(await sites.site_config(session, site_id)).timezone,
            settings=PublishingSettings.model_validate(row.settings),
            queued=await repo.queued(session, site_id),
            updated_at=row.updated_at,
        )

    async def queue(self, account_id: str, site_id: str, states: Sequence[str], limit: int) -> list[QueueEntry]:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            return [QueueEntry.entry(row, title) for row, title in await repo.queue_rows(
                session, account_id, site_id, states, limit)]  # fmt: skip

    # ------------------------------------------------------------------ a person's actions
    async def _publishable(self, session: AsyncSession, account_id: str, draft_id: int) -> Draft:
        found = await repo.approved_draft(session, account_id, draft_id)
        if found is None:
            raise NotFoundError(f"draft {draft_id} does not exist")
        draft, decision = found
        if decision not in PUBLISHABLE_DECISIONS:
            state = decision or "not reviewed yet"
            raise ConflictError(f"draft {draft_id} is {state}; only approved drafts are published")
        await repo.settings_row(session, draft.site_id, lock=True)  # the site's lock before its rows
        if not await repo.has_connection(session, draft.site_id):
            raise ConflictError(f"site {draft.site_id} has no WordPress connection to publish draft {draft_id} to")
        return draft

    @staticmethod
    def _entry(session: AsyncSession, draft: Draft, existing: ScheduledPublication | None) -> ScheduledPublication:
        if existing is not None:
            if existing.state in {"publishing", "published"}:
                raise ConflictError(f"draft {draft.id} is {existing.state} already", state=existing.state)
            return existing
        entry = ScheduledPublication(draft_id=draft.id, site_id=draft.site_id, run_id=draft.run_id,
                                     state="unscheduled", scheduled_by="person", retries=0, attempts=0)  # fmt: skip
        session.add(entry)
        return entry

    @staticmethod
    async def _answer(session: AsyncSession, entry: ScheduledPublication) -> DraftPublishing:
        await session.flush()
        await session.refresh(entry)
        return DraftPublishing(draft_id=entry.draft_id, site_id=entry.site_id, publishing=PublishingView.of(entry))

    async def schedule(self, account_id: str, draft_id: int, at: datetime | None) -> DraftPublishing:
        """At `at` (a move when it has a slot already), or at the next free slot of the site's mode."""
        async with self._sessions.begin() as session:
            draft = await self._publishable(session, account_id, draft_id)
            entry = self._entry(session, draft, await repo.entry(session, draft_id, lock=True))
            now = utcnow()
            settings = await site_settings(session, draft.site_id)
            planner = await planner_for(session, draft.site_id, settings, now, self.policy, leave_out=draft_id)
            if at is None:
                slot = planner.next()
                if isinstance(slot, Unschedulable):
                    raise ConflictError(f"draft {draft_id}: {slot.reason}", reason_code=slot.code)
            else:
                slot = at.astimezone(UTC)
                holder = await repo.holder_of(session, draft.site_id, slot)
                if holder is not None and holder != draft_id:
                    raise ConflictError(f"draft {holder} is scheduled at {slot.isoformat()} already", draft_id=holder)
                if planner.queued >= settings.max_scheduled_queue:
                    raise ConflictError(
                        f"queue full: {planner.queued} drafts are scheduled (max_scheduled_queue "
                        f"{settings.max_scheduled_queue})", reason_code="queue_full",
                    )  # fmt: skip
            before = entry.scheduled_publish_at if entry.state == "scheduled" else None
            entry.state, entry.scheduled_publish_at, entry.scheduled_by = "scheduled", slot, "person"
            entry.reason = entry.reason_code = entry.retry_at = None
            entry.retries, entry.updated_at = 0, now
            where = local_text(slot, planner.timezone)
            what = f"scheduled for {where}"
            if before is not None:
                what = f"moved from {local_text(before, planner.timezone)} to {where}"
            sites.log_line(session, draft.site_id, entry.run_id, 7, f"draft {draft_id} {what} by a person")
            return await self._answer(session, entry)

    async def unschedule(self, account_id: str, draft_id: int) -> DraftPublishing:
        async with self._sessions.begin() as session:
            found = await repo.approved_draft(session, account_id, draft_id)
            if found is None:
                raise NotFoundError(f"draft {draft_id} does not exist")
            draft = found[0]
            await repo.settings_row(session, draft.site_id, lock=True)
            entry = await repo.entry(session, draft_id, lock=True)
            if entry is None or entry.state not in {"scheduled", "unscheduled"}:
                state = entry.state if entry is not None else "not in the schedule"
                raise ConflictError(f"draft {draft_id} is {state}; only a scheduled draft is unscheduled")
            entry.state, entry.scheduled_publish_at, entry.scheduled_by = "unscheduled", None, "person"
            entry.reason, entry.reason_code, entry.retry_at = "unscheduled by a person", HELD, None
            entry.updated_at = utcnow()
            sites.log_line(session, draft.site_id, entry.run_id, 7, f"draft {draft_id} unscheduled by a person")
            return await self._answer(session, entry)

    async def publish_now(self, account_id: str, draft_id: int) -> DraftPublishing:
        """Hand the draft to the publisher at once (also again after a failure)."""
        async with self._sessions.begin() as session:
            draft = await self._publishable(session, account_id, draft_id)
            entry = self._entry(session, draft, await repo.entry(session, draft_id, lock=True))
            now = utcnow()
            entry.scheduled_publish_at, entry.scheduled_by = now, "person"
            hand_over(session, self._outbox, entry, account_id, now, "publish now, by a person")
            answer = await self._answer(session, entry)
        self._outbox.committed()
        return answer

    # ------------------------------------------------------------------ the ticker
    async def tick(self, now: datetime | None = None) -> int:
        """Hand every due draft to the publisher, then try waiting drafts again; returns how many went out."""
        handed = 0
        while True:
            async with self._sessions.begin() as session:
                n = await hand_over_due(session, self._outbox, now or utcnow(), HAND_OVER_BATCH)
            if n:
                self._outbox.committed()
            handed += n
            if n < HAND_OVER_BATCH:
                break
        at = now or utcnow()
        async with self._sessions() as session:
            waiting = await repo.sites_waiting(session, at, RETRY_SITES_PER_ROUND)
        for site_id in waiting:
            try:
                async with self._sessions.begin() as session:
                    await retry_site(session, site_id, at, self.policy)
            except Exception:  # one site's trouble must not keep the others waiting
                log.exception("publishing: retrying the waiting drafts of site %s failed", site_id)
        return handed

    # ------------------------------------------------------------------ the publisher's reports
    async def on_result(self, result: PublishResult) -> bool:
        async with self._sessions.begin() as session:
            return await results.record_result(session, result)

    async def on_status(self, event: PublicationStatusChanged) -> bool:
        async with self._sessions.begin() as session:
            return await results.record_status(session, event)
