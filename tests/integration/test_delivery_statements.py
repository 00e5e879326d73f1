"""The worker's delivery steps that became one statement each (issue 13), against the real database:
`start_or_recall` counts an attempt only for a message not handled yet, and commits it without a transaction
around it; `settle_inbox` stores the answer and forgets the count together; rows passed as parameters
(`claim_inbox_with_results`) keep SQL NULL for a message claimed without a result."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import DeliveryAttempt, InboxMessage
from shared.db.session import autocommit, make_engine, make_sessionmaker
from shared.delivery import Processed, claim_inbox, claim_inbox_with_results, settle_inbox, start_or_recall


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
        assert await claim_inbox(s, consumer, message)
        await settle_inbox(s, consumer, message, {"answer": 42})
    assert await attempts_of(db, consumer, message) is None

    async with autocommit(db) as s:
        assert await start_or_recall(s, consumer, message) == Processed({"answer": 42})
    assert await attempts_of(db, consumer, message) is None  # a recalled message counts no attempt


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
