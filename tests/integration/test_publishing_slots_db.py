"""Two orchestrator replicas at once, against the real PostgreSQL: a slot is never given twice, and a due draft is
handed to the publisher once (one PublishCommand on the outbox), however the transactions interleave.

Slots are planned in 2098, so the stack's own orchestrator (ticking on the real clock) never touches them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from services.orchestrator.publishing import scheduling
from services.orchestrator.publishing.scheduling import Policy
from shared.db.models import OutboxMessage, ScheduledPublication
from shared.delivery import Outbox
from tests.integration.publishing_support import forget_schedule, seed_drafts, seed_site

NOW = datetime(2098, 6, 1, 6, 0, tzinfo=UTC)  # a Sunday; the next slot is Monday 09:00 UTC
POLICY = Policy()


async def slots_of(db: async_sessionmaker[AsyncSession], site_id: str) -> dict[int, datetime | None]:
    async with db() as s:
        rows = await s.scalars(select(ScheduledPublication).where(ScheduledPublication.site_id == site_id))
        return {r.draft_id: r.scheduled_publish_at for r in rows}


async def test_a_second_replica_waits_for_the_first_and_takes_the_next_slot(
    stack: Stack, db: async_sessionmaker[AsyncSession]
) -> None:
    site = await seed_site(db, settings={"scheduling_mode": "time_slots"})
    first, second = await seed_drafts(db, site.site_id, 2)
    try:
        async with db() as a, db() as b:
            await a.begin()
            await b.begin()
            got_a = await scheduling.assign(a, site.site_id, [(first, None)], NOW, POLICY)
            # B plans for the same site while A holds the site's lock (uncommitted): it must wait.
            planning_b = asyncio.create_task(scheduling.assign(b, site.site_id, [(second, None)], NOW, POLICY))
            await asyncio.sleep(1.0)
            assert not planning_b.done(), "the second replica planned without waiting for the site's lock"
            await a.commit()
            got_b = await asyncio.wait_for(planning_b, 30)
            await b.commit()
        assert got_a.scheduled[0].scheduled_publish_at == datetime(2098, 6, 2, 9, tzinfo=UTC)
        assert got_b.scheduled[0].scheduled_publish_at == datetime(2098, 6, 2, 14, tzinfo=UTC)
    finally:
        await forget_schedule(db, site.site_id)


async def test_many_replicas_at_once_never_share_a_slot(stack: Stack, db: async_sessionmaker[AsyncSession]) -> None:
    site = await seed_site(db, settings={"scheduling_mode": "stagger", "stagger_interval_minutes": 30,
                                         "daily_publish_target": 100, "weekly_publish_target": 100})  # fmt: skip
    drafts = await seed_drafts(db, site.site_id, 12)

    async def replica(batch: list[int]) -> None:
        async with db.begin() as s:
            await scheduling.assign(s, site.site_id, [(d, None) for d in batch], NOW, POLICY)

    try:
        await asyncio.gather(*(replica(drafts[i : i + 2]) for i in range(0, 12, 2)))
        slots = await slots_of(db, site.site_id)
        assert len(slots) == 12 and None not in slots.values()
        assert len(set(slots.values())) == 12, slots
        first = datetime(2098, 6, 2, 9, tzinfo=UTC)
        assert sorted(v for v in slots.values() if v) == [first + timedelta(minutes=30 * i) for i in range(12)]
    finally:
        await forget_schedule(db, site.site_id)


async def test_the_database_refuses_a_taken_slot_even_without_the_lock(
    stack: Stack, db: async_sessionmaker[AsyncSession]
) -> None:
    site = await seed_site(db)
    first, second = await seed_drafts(db, site.site_id, 2)
    slot = datetime(2098, 6, 2, 9, tzinfo=UTC)
    try:
        async with db.begin() as s:
            s.add(ScheduledPublication(draft_id=first, site_id=site.site_id, state="scheduled",
                                       scheduled_publish_at=slot, scheduled_by="auto"))  # fmt: skip
        with pytest.raises(IntegrityError, match="uq_publishing_schedule_site_slot"):
            async with db.begin() as s:
                s.add(ScheduledPublication(draft_id=second, site_id=site.site_id, state="scheduled",
                                           scheduled_publish_at=slot, scheduled_by="person"))  # fmt: skip
    finally:
        await forget_schedule(db, site.site_id)


async def test_two_tickers_hand_each_due_draft_over_once(stack: Stack, db: async_sessionmaker[AsyncSession]) -> None:
    site = await seed_site(db, settings={"scheduling_mode": "immediate"})
    drafts = await seed_drafts(db, site.site_id, 10)
    async with db.begin() as s:
        await scheduling.assign(s, site.site_id, [(d, None) for d in drafts], NOW, Policy(timedelta(seconds=1)))
    outbox = Outbox(f"test-{uuid.uuid4().hex[:8]}")  # a producer no relay serves: the rows stay to be counted
    later = NOW + timedelta(minutes=5)
    # The ticker is global: drafts other tests left scheduled (on the real clock, so before 2098) are due too, and
    # are handed over with ours. What must hold for every one of them: each is handed over once, and a second
    # ticker skips the rows the first holds instead of waiting for them.
    try:
        async with db() as a, db() as b:
            await a.begin()
            await b.begin()
            handed_a = await scheduling.hand_over_due(a, outbox, later, limit=4)  # holds 4 rows, uncommitted
            handed_b = await asyncio.wait_for(scheduling.hand_over_due(b, outbox, later, limit=1000), 30)
            await a.commit()
            await b.commit()
        assert handed_a == 4 and handed_b >= 6

        async def tick() -> int:
            async with db.begin() as s:
                return await scheduling.hand_over_due(s, outbox, later, limit=1000)

        late = sum(await asyncio.gather(tick(), tick()))  # only what fell due elsewhere meanwhile, never ours
        async with db() as s:
            mine = select(OutboxMessage.payload).where(OutboxMessage.producer == outbox.producer)
            payloads = (await s.scalars(mine)).all()
            states = set((await s.scalars(select(ScheduledPublication.state).where(
                ScheduledPublication.site_id == site.site_id))).all())  # fmt: skip
        handed = [p["draft_id"] for p in payloads]
        assert len(handed) == len(set(handed)) == handed_a + handed_b + late  # nothing handed over twice
        seeded = set(drafts)
        ours = [p for p in payloads if p["draft_id"] in seeded]
        assert sorted(p["draft_id"] for p in ours) == sorted(drafts)
        assert {p["account_id"] for p in ours} == {site.account_id} and states == {"publishing"}
    finally:
        await forget_schedule(db, site.site_id)
