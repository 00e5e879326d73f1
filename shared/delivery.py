"""Inbox (idempotent consume) and outbox (no dual writes), both inside the caller's transaction.

No Kafka imports here: the relay that moves outbox rows to Kafka lives in `shared.kafka`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import Message
from shared.db.models import DeliveryAttempt, InboxMessage, OutboxMessage


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


def parked_view(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "producer": row.producer,
        "topic": row.topic,
        "key": row.key,
        "message_id": row.message_id,
        "send_attempts": row.send_attempts,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "parked_at": row.parked_at,
    }


async def parked_outbox(session: AsyncSession, limit: int) -> list[dict[str, Any]]:
    """Outbox rows the broker refused for good, oldest first (their payload stays in the table)."""
    rows = await session.scalars(
        select(OutboxMessage).where(OutboxMessage.parked_at.is_not(None)).order_by(OutboxMessage.id).limit(limit)
    )
    return [parked_view(row) for row in rows]


async def unpark_outbox(session: AsyncSession, row_id: int) -> dict[str, Any] | None:
    """Hand a parked row back to its producer's relay with a fresh attempt count; None if not parked."""
    row = await session.scalar(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.parked_at.is_not(None))
        .values(parked_at=None, send_attempts=0)
        .returning(OutboxMessage)
    )
    return parked_view(row) if row is not None else None


async def count_attempt(
    sessions: async_sessionmaker[AsyncSession], consumer: str, message_id: str
) -> tuple[int, str | None]:
    """Count one more start on a message, committed before the work begins; returns (attempts, last error)."""
    stmt = (
        insert(DeliveryAttempt)
        .values(consumer=consumer, message_id=message_id, attempts=1)
        .on_conflict_do_update(
            index_elements=[DeliveryAttempt.consumer, DeliveryAttempt.message_id],
            set_={"attempts": DeliveryAttempt.attempts + 1, "updated_at": func.now()},
        )
        .returning(DeliveryAttempt.attempts, DeliveryAttempt.last_error)
    )
    async with sessions.begin() as session:
        attempts, last_error = (await session.execute(stmt)).one()
    return int(attempts), last_error


async def note_attempt_failed(
    sessions: async_sessionmaker[AsyncSession], consumer: str, message_id: str, error: str, counts: bool
) -> None:
    """Keep the reason; an attempt that failed on an outage (not the message's fault) is given back."""
    values: dict[str, Any] = {"last_error": error[:2000], "updated_at": func.now()}
    if not counts:
        values["attempts"] = func.greatest(DeliveryAttempt.attempts - 1, 0)
    async with sessions.begin() as session:
        await session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.consumer == consumer, DeliveryAttempt.message_id == message_id)
            .values(**values)
        )


async def forget_attempts(sessions: async_sessionmaker[AsyncSession], consumer: str, message_id: str) -> None:
    async with sessions.begin() as session:
        await session.execute(
            delete(DeliveryAttempt).where(
                DeliveryAttempt.consumer == consumer, DeliveryAttempt.message_id == message_id
            )
        )
