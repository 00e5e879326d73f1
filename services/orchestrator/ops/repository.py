"""SQL of the operator's delivery tools (the outbox rows themselves are shared.delivery's)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import OutboxMessage
from shared.delivery import parked_outbox, unpark_outbox

parked = parked_outbox
unpark = unpark_outbox


async def exists(session: AsyncSession, row_id: int) -> bool:
    return await session.get(OutboxMessage, row_id) is not None
