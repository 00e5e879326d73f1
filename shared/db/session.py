"""Async engine and session factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    # pre_ping costs a round trip per checkout. Consumers on the hot path turn it off: a connection the
    # server dropped fails its attempt once as an outage (not counted, retried; shared.consume.is_outage),
    # and SQLAlchemy then discards every pooled connection older than the failure.
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=pre_ping)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: services read attributes after commit without another round trip.
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def autocommit(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose statements each commit on their own: no BEGIN and COMMIT (two round trips) around
    them. For reads that need no common snapshot and for single statements that are atomic by themselves,
    on a consumer's hot path (issue 13)."""
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
