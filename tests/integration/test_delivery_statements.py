"""The worker's delivery steps that became one statement each (issue 13), against the real database:
`start_or_recall` counts an attempt only for a message not handled yet, and commits it without a transaction
around it; `claim_settled` claims the inbox row, stores the answer and forgets the count together (a duplicate
that claims second fails); rows passed as parameters (`claim_inbox_with_results`) keep SQL NULL for a message
claimed without a result."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import DeliveryAttempt, InboxMessage
from shared.db.session import autocommit, make_engine, make_sessionmaker
from shared.delivery import Processed, claim_inbox, claim_inbox_with_results, claim_settled, start_or_recall


async def attempts_of(db: async_sessionmaker[AsyncSession], consumer: str, message_id: str) -> int | None:
    async with db() as s:
        return await s.scalar(
            select(DeliveryAttempt.attempts).where(
                DeliveryAttempt.consumer == consumer, DeliveryAttempt.message_id == message_id
            )
        )


async def test_attempts_count_until_the_message_is_settled_then_its_answer_is_recalled(
    db: async_sessionmaker[AsyncSession],
) -> None:
    consumer, message = f"stmt-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    for expected in (1, 2):
        async with autocommit(db) as s:
            assert await start_or_recall(s, consumer, message) == (expected, None)
        # committed by the statement itself: another session sees it at once
        assert await attempts_of(db, consumer, message) == expected

    async with db.begin() as s:
        assert await claim_settled(s, consumer, message, {"answer": 42})
    assert await attempts_of(db, consumer, message) is None

    async with autocommit(db) as s:
        assert await start_or_recall(s, consumer, message) == Processed({"answer": 42})
    assert await attempts_of(db, consumer, message) is None  # a recalled message counts no attempt


async def test_a_duplicate_that_claims_second_waits_for_the_first_then_fails_and_keeps_nothing(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Two deliveries of one message settle side by side: the second's claim blocks on the first one's
    uncommitted inbox row, then conflicts; rolled back, it leaves the first one's answer and no count."""
    consumer, message = f"stmt-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with autocommit(db) as s:
        assert await start_or_recall(s, consumer, message) == (1, None)
    async with db.begin() as first:
        assert await claim_settled(first, consumer, message, {"answer": "first"})
        async with db() as second:
            claim = asyncio.create_task(claim_settled(second, consumer, message, {"answer": "second"}))
            await asyncio.sleep(0.5)
            assert not claim.done()  # waiting on the first one's row
            await first.commit()
            assert await asyncio.wait_for(claim, 10) is False
            await second.rollback()
    async with autocommit(db) as s:
        assert await start_or_recall(s, consumer, message) == Processed({"answer": "first"})
    assert await attempts_of(db, consumer, message) is None


async def test_a_message_claimed_without_an_answer_is_recalled_as_such(db: async_sessionmaker[AsyncSession]) -> None:
    consumer, message = f"stmt-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with db.begin() as s:
        assert await claim_inbox(s, consumer, message)
    async with autocommit(db) as s:
        assert await start_or_recall(s, consumer, message) == Processed(None)


async def test_rows_claimed_as_parameters_keep_sql_null_and_their_answers(
    db: async_sessionmaker[AsyncSession],
) -> None:
    consumer = f"stmt-{uuid.uuid4().hex[:8]}"
    bare, answered, taken = (uuid.uuid4().hex for _ in range(3))
    async with db.begin() as s:
        assert await claim_inbox(s, consumer, taken)
    async with db.begin() as s:
        claimed = await claim_inbox_with_results(s, consumer, {bare: None, answered: {"n": 1}, taken: {"n": 2}})
    assert claimed == {bare, answered}
    async with db() as s:
        found = await s.execute(
            select(InboxMessage.message_id, InboxMessage.result.is_(None)).where(InboxMessage.consumer == consumer)
        )
        rows = dict(found.all())  # (message id, result IS NULL)
        kept = await s.scalar(
            select(InboxMessage.result).where(InboxMessage.consumer == consumer, InboxMessage.message_id == answered)
        )
    assert rows == {bare: True, answered: False, taken: True}  # SQL NULL, not JSON null; the earlier row as it was
    assert kept == {"n": 1}


async def test_a_connection_back_from_autocommit_is_transactional_again(stack: Stack) -> None:
    """The pool's one connection serves an autocommit session, then a transaction that fails: nothing of the
    failed transaction stays (the isolation level was reset when the connection went back to the pool)."""
    engine = make_engine(stack.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    consumer, message = f"stmt-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    try:
        async with autocommit(sessions) as s:
            await start_or_recall(s, consumer, message)
        with pytest.raises(RuntimeError):
            async with sessions.begin() as s:
                assert await claim_inbox(s, consumer, message)
                raise RuntimeError("the transaction fails after its insert")
        async with sessions() as s:
            claimed = await s.scalar(
                select(InboxMessage.message_id).where(
                    InboxMessage.consumer == consumer, InboxMessage.message_id == message
                )
            )
        assert claimed is None
        assert engine.pool.checkedin() == 1  # one connection served all three
    finally:
        await engine.dispose()
