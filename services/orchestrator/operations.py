"""Operator actions on delivery plumbing: the outbox rows the broker refused for good.

A parked row (see shared.kafka.OutboxRelay) keeps its payload; once the cause is fixed (say, the
topic's max.message.bytes raised), retrying hands it back to its producer's relay.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.service import ConflictError, NotFoundError
from shared.db.models import OutboxMessage
from shared.delivery import parked_outbox, unpark_outbox


class OutboxOperations:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def parked(self, limit: int) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            return await parked_outbox(session, limit)

    async def retry(self, row_id: int) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            row = await unpark_outbox(session, row_id)
            if row is not None:
                return row
            if await session.get(OutboxMessage, row_id) is None:
                raise NotFoundError(f"outbox row {row_id} does not exist (or was sent and pruned)")
            raise ConflictError(f"outbox row {row_id} is not parked")
