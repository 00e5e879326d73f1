"""SQL of the dashboard's sessions: one row per signed-in browser, keyed by the SHA-256 of its cookie."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import DashboardSession


async def add(session: AsyncSession, row: DashboardSession) -> None:
    session.add(row)
    await session.flush()


async def live(session: AsyncSession, token_sha256: str, now: datetime) -> DashboardSession | None:
    return await session.scalar(
        select(DashboardSession).where(DashboardSession.token_sha256 == token_sha256, DashboardSession.expires_at > now)
    )


async def remove(session: AsyncSession, token_sha256: str) -> None:
    await session.execute(delete(DashboardSession).where(DashboardSession.token_sha256 == token_sha256))


async def remove_expired(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= now))
