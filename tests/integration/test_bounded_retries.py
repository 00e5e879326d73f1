"""Bounded retries count in the database: a restart (no process memory), a process that dies while
handling the message, and outages are each handled as a user of the pipeline would want."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import consume
from shared.consume import MAX_ATTEMPTS, bounded
from shared.db.models import DeliveryAttempt
from shared.delivery import count_attempt


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consume, "INFRA_BACKOFF_SECONDS", 0.0)


class Recorder:
    def __init__(self) -> None:
        self.calls = 0
        self.exhausted: list[str] = []

    async def give_up(self, reason: str) -> None:
        self.exhausted.append(reason)


async def stored(db: async_sessionmaker[AsyncSession], consumer: str) -> list[DeliveryAttempt]:
    async with db() as s:
        return list((await s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.consumer == consumer))).all())


async def test_a_message_that_keeps_failing_is_given_up_after_the_limit_across_restarts(
    db: async_sessionmaker[AsyncSession],
) -> None:
    consumer, key, rec = f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, Recorder()

    async def fails() -> None:
        rec.calls += 1
        raise KeyError("brief.outline")

    for attempt in range(1, MAX_ATTEMPTS):
        # Each call stands for a fresh process: only the database carries the count from one to the next.
        with pytest.raises(KeyError):
            await bounded(db, consumer, key, fails, rec.give_up)
        [row] = await stored(db, consumer)
        assert row.attempts == attempt and row.last_error == "KeyError: 'brief.outline'"
    await bounded(db, consumer, key, fails, rec.give_up)  # the last attempt: handed over, not raised
    assert rec.calls == MAX_ATTEMPTS
    assert rec.exhausted == [f"failed {MAX_ATTEMPTS} times: KeyError: 'brief.outline'"]
    assert await stored(db, consumer) == []  # settled: nothing left behind


async def test_a_message_that_kills_its_process_is_given_up_without_running_it_again(
    db: async_sessionmaker[AsyncSession],
) -> None:
    consumer, key, rec = f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, Recorder()
    for _ in range(MAX_ATTEMPTS):  # five deliveries that started and never came back (OOM kill, segfault)
        await count_attempt(db, consumer, key)

    async def must_not_run() -> None:
        rec.calls += 1

    await bounded(db, consumer, key, must_not_run, rec.give_up)
    assert rec.calls == 0
    [reason] = rec.exhausted
    assert reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts: the handler never finished")
    assert await stored(db, consumer) == []


async def test_outages_are_retried_without_limit_and_do_not_use_up_the_attempts(
    db: async_sessionmaker[AsyncSession],
) -> None:
    consumer, key, rec = f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, Recorder()
    outage = OperationalError("SELECT 1", {}, ConnectionResetError("server closed the connection"))

    async def database_gone() -> None:
        rec.calls += 1
        raise outage

    for _ in range(MAX_ATTEMPTS * 2):
        with pytest.raises(OperationalError):
            await bounded(db, consumer, key, database_gone, rec.give_up)
    [row] = await stored(db, consumer)
    assert row.attempts == 0 and "OperationalError" in (row.last_error or "")
    assert rec.exhausted == []

    async def works() -> None:
        rec.calls += 1

    await bounded(db, consumer, key, works, rec.give_up)  # back: the message is handled normally
    assert rec.calls == MAX_ATTEMPTS * 2 + 1 and rec.exhausted == []
    assert await stored(db, consumer) == []
