"""Inbox (idempotent consume) and outbox (no dual writes), both inside the caller's transaction.

No Kafka imports here: the relay that moves outbox rows to Kafka lives in `shared.kafka`.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import Message
from shared.db.models import InboxMessage, OutboxMessage


async def already_processed(session: AsyncSession, consumer: str, message_id: str) -> bool:
    stmt = select(exists().where(InboxMessage.consumer == consumer, InboxMessage.message_id == message_id))
    return bool(await session.scalar(stmt))


async def claim_inbox(session: AsyncSession, consumer: str, message_id: str) -> bool:
    """Record the message as processed; False when another delivery already did (then roll back).

    A concurrent duplicate blocks on the first one's uncommitted row and then conflicts, so exactly
    one transaction per (consumer, message_id) ever commits.
    """
    stmt = (
        insert(InboxMessage)
        .values(consumer=consumer, message_id=message_id)
        .on_conflict_do_nothing()
        .returning(InboxMessage.message_id)
    )
    return (await session.scalar(stmt)) is not None


class Outbox:
    """Adds outbox rows for one producer and pokes the relay after the transaction commits."""

    def __init__(self, producer: str, on_commit: Callable[[], None] | None = None) -> None:
        self.producer = producer
        self._on_commit = on_commit

    def add(self, session: AsyncSession, topic: str, key: str, message: Message) -> None:
        session.add(
            OutboxMessage(
                producer=self.producer,
                topic=topic,
                key=key,
                message_id=message.message_id,
                payload=message.model_dump(mode="json"),
            )
        )

    def committed(self) -> None:
        if self._on_commit is not None:
            self._on_commit()
