"""Operator actions on delivery plumbing: the outbox rows the broker refused for good.

A parked row (see shared.kafka.OutboxRelay) keeps its payload; once the cause is fixed (say, the
topic's max.message.bytes raised), retrying hands it back to its producer's relay.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.ops import repository as repo


class ParkedRow(BaseModel):
    id: int
    producer: str
    topic: str
    key: str
    message_id: str
    send_attempts: int
    last_error: str | None
    created_at: AwareDatetime
    parked_at: AwareDatetime | None


def _row(data: dict[str, Any]) -> ParkedRow:
    return ParkedRow.model_validate(data)


class OpsService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def parked(self, limit: int) -> list[ParkedRow]:
        async with self._sessions() as session:
            return [_row(r) for r in await repo.parked(session, limit)]

    async def retry(self, row_id: int) -> ParkedRow:
        async with self._sessions.begin() as session:
            row = await repo.unpark(session, row_id)
            if row is not None:
                return _row(row)
            if not await repo.exists(session, row_id):
                raise NotFoundError(f"outbox row {row_id} does not exist (or was sent and pruned)")
            raise ConflictError(f"outbox row {row_id} is not parked")
