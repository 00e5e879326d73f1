"""Outbox lanes (shared.delivery.LANES): a topic of a lane is relayed under its own producer name by its own
relay, so a backlog there (an import's entity events, one per keyword) never holds back a run's commands and
results (issue 13). Against the real broker and database."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import Message
from shared.db.models import OutboxMessage
from shared.delivery import Outbox, lane_producers
from shared.kafka import OutboxRelay, ensure_topics, make_broker
from shared.topics import ENTITY_EVENTS
from tests.helpers import create_site, eventually, import_keywords, keyword_set, read_topic


async def test_rows_behind_a_lane_backlog_go_out_without_waiting_for_it(
    stack: Stack, db: async_sessionmaker[AsyncSession]
) -> None:
    producer = f"lanes-{uuid.uuid4().hex[:8]}"
    bulk, urgent = (f"contentline.test.lanes.{name}.{uuid.uuid4().hex[:8]}" for name in ("bulk", "urgent"))
    await ensure_topics(stack.kafka_bootstrap, 1, [bulk, urgent])
    outbox = Outbox(producer, lanes={bulk: "bulk"})
    backlog = [Message() for _ in range(300)]  # more than one relay round (200 rows)
    command = Message()
    async with db.begin() as s:  # the backlog first: lower ids than the command
        for message in backlog:
            outbox.add(s, bulk, "site-1", message)
        await s.flush()
        outbox.add(s, urgent, "site-1", command)
    assert lane_producers(producer, {bulk: "bulk"}) == [producer, f"{producer}.bulk"]

    broker = make_broker(stack.kafka_bootstrap, "lanes-test")
    await broker.connect()
    try:
        main, lane = OutboxRelay(broker, db, producer=producer), OutboxRelay(broker, db, producer=f"{producer}.bulk")
        assert await main.relay_once() == 1  # the command alone, though 300 rows were added before it
        sent = await read_topic(stack.kafka_bootstrap, urgent)
        assert [dict(r.headers)["message_id"].decode() for r in sent] == [command.message_id]
        async with db() as s:
            waiting = await s.scalars(
                select(OutboxMessage.message_id).where(
                    OutboxMessage.producer == f"{producer}.bulk", OutboxMessage.published_at.is_(None)
                )
            )
            assert set(waiting) == {m.message_id for m in backlog}
        assert [await lane.relay_once() for _ in range(3)] == [200, 100, 0]
    finally:
        await broker.stop()
    relayed = await read_topic(stack.kafka_bootstrap, bulk)
    assert [dict(r.headers)["message_id"].decode() for r in relayed] == [m.message_id for m in backlog]  # in order


async def test_the_services_relay_entity_events_in_their_lane(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(3, 4))  # one keyword_added event per keyword

    async def relayed() -> list[tuple[str, bool]] | None:
        async with db() as s:
            rows = (
                await s.execute(
                    select(OutboxMessage.producer, OutboxMessage.published_at.is_not(None)).where(
                        OutboxMessage.topic == ENTITY_EVENTS, OutboxMessage.payload["site_id"].astext == site
                    )
                )
            ).all()
        return [(p, bool(sent)) for p, sent in rows] if len(rows) == 12 and all(sent for _, sent in rows) else None

    rows = await eventually(relayed, timeout=30)  # the orchestrator's lane relay published them
    assert {p for p, _ in rows} == {"orchestrator.events"}


async def test_a_commit_that_lands_while_an_empty_round_reads_starts_another_round(
    stack: Stack, db: async_sessionmaker[AsyncSession]
) -> None:
    producer, topic = f"race-{uuid.uuid4().hex[:8]}", f"contentline.test.race.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, 1, [topic])
    outbox = Outbox(producer)
    late = Message()

    class Racing(OutboxRelay):
        raced = False

        async def relay_once(self) -> int:
            sent = await super().relay_once()
            if not sent and not self.raced:  # the round read nothing; a transaction commits just after that read
                self.raced = True
                async with db.begin() as s:
                    outbox.add(s, topic, "site-1", late)
                self.wake()  # what Outbox.committed() does
            return sent

    broker = make_broker(stack.kafka_bootstrap, "race-test")
    await broker.connect()
    relay = Racing(broker, db, producer=producer, poll_seconds=60)  # a lost wake-up would wait a minute
    relay.start()
    try:

        async def published() -> bool:
            async with db() as s:
                row = await s.scalar(select(OutboxMessage).where(OutboxMessage.message_id == late.message_id))
            return row is not None and row.published_at is not None

        await eventually(published, timeout=10)
    finally:
        await relay.stop()
        await broker.stop()
    sent = await read_topic(stack.kafka_bootstrap, topic)
    assert [dict(r.headers)["message_id"].decode() for r in sent] == [late.message_id]


async def test_a_relay_sends_nothing_while_another_replica_holds_its_producers_turn(
    stack: Stack, db: async_sessionmaker[AsyncSession]
) -> None:
    """The turn (an advisory lock) is taken in the statement that reads the rows: while another transaction
    holds it, a round reads and sends nothing; once it ends, the rows go out."""
    producer = f"turns-{uuid.uuid4().hex[:8]}"
    topic = f"contentline.test.turns.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, 1, [topic])
    outbox = Outbox(producer)
    messages = [Message() for _ in range(3)]
    async with db.begin() as s:
        for message in messages:
            outbox.add(s, topic, "site-1", message)
    broker = make_broker(stack.kafka_bootstrap, "turns-test")
    await broker.connect()
    try:
        relay = OutboxRelay(broker, db, producer=producer)
        async with db.begin() as other:  # another replica's round, in progress
            assert await other.scalar(select(func.pg_try_advisory_xact_lock(func.hashtext(producer))))
            assert await relay.relay_once() == 0
            async with db() as s:
                waiting = await s.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.producer == producer, OutboxMessage.published_at.is_(None))
                )
            assert waiting == 3
        assert await relay.relay_once() == 3
        assert await relay.relay_once() == 0
    finally:
        await broker.stop()
    relayed = await read_topic(stack.kafka_bootstrap, topic)
    assert [dict(r.headers)["message_id"].decode() for r in relayed] == [m.message_id for m in messages]
