"""Async engine and session factory."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    # pre_ping costs a round trip per checkout. Consumers on the hot path turn it off: a connection the
    # server dropped fails its attempt once as an outage (not counted, retried; shared.consume.is_outage),
    # and SQLAlchemy then discards every pooled connection older than the failure.
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=pre_ping)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: services read attributes after commit without another round trip.
    return async_sessionmaker(engine, expire_on_commit=False)
