"""Outbox and inbox rows do not pile up forever: each service prunes only its own, old, settled rows."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import utcnow
from shared.db.models import InboxMessage, OutboxMessage
from shared.kafka import OutboxRelay, Retention, make_broker


async def test_prune_removes_only_own_old_settled_rows(db: async_sessionmaker[AsyncSession]) -> None:
    me, other = f"svc-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    old, recent = utcnow() - timedelta(days=30), utcnow() - timedelta(minutes=5)

    def outbox(producer: str, published: object) -> OutboxMessage:
        return OutboxMessage(
            producer=producer, topic="t", key="k", message_id=uuid.uuid4().hex, payload={}, published_at=published
        )

    async with db.begin() as s:
        s.add_all([outbox(me, old), outbox(me, recent), outbox(me, None), outbox(other, old)])
        s.add_all(
            [
                InboxMessage(consumer=me, message_id="a", processed_at=old),
                InboxMessage(consumer=f"{me}.results", message_id="b", processed_at=old),
                InboxMessage(consumer=me, message_id="c", processed_at=recent),
                InboxMessage(consumer=other, message_id="d", processed_at=old),
            ]
        )
    relay = OutboxRelay(make_broker("127.0.0.1:1", "unused"), db, producer=me, retention=Retention())
    assert await relay.prune() == (1, 2)
    async with db() as s:
        left = (
            await s.execute(
                select(OutboxMessage.producer, OutboxMessage.published_at).where(
                    OutboxMessage.producer.in_([me, other])
                )
            )
        ).all()
        inbox = set(
            (
                await s.scalars(
                    select(InboxMessage.message_id).where(InboxMessage.consumer.in_([me, f"{me}.results", other]))
                )
            ).all()
        )
    assert sorted((p, ts is None) for p, ts in left) == sorted([(me, False), (me, True), (other, False)])
    assert inbox == {"c", "d"}
