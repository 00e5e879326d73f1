"""A worker records the commands a persist wrote for too (a clusterer pass's riders) in one go
(shared.worker.record_along), against the real database: each claimed with its own result and its attempt
count dropped, a rider another delivery recorded first left as it was, every result and dead letter in the
outbox once."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import ItemFailure, Stage, StageCommand, StageResult, Usage
from shared.db.models import DeliveryAttempt, InboxMessage, OutboxMessage
from shared.delivery import Outbox, begin_attempt, claim_inbox
from shared.topics import COMMANDS_DLQ, STAGE_RESULTS
from shared.worker import BatchOutcome, execute_command


def command(seq: int) -> StageCommand:
    return StageCommand(
        account_id="default",
        site_id="site-along",
        run_id="run-along",
        stage=Stage.CLUSTER,
        batch_seq=seq,
        item_ids=[seq],
    )


async def test_riders_are_claimed_with_their_results_and_one_recorded_earlier_stays(
    db: async_sessionmaker[AsyncSession],
) -> None:
    consumer = f"along-{uuid.uuid4().hex[:8]}"
    main, fresh, failed, earlier = (command(i) for i in range(4))
    async with db.begin() as s:
        for cmd in (main, fresh, failed, earlier):
            await begin_attempt(s, consumer, cmd.message_id)
        assert await claim_inbox(s, consumer, earlier.message_id)  # another delivery recorded it first
    outbox = Outbox(consumer)
    written: list[str] = []

    async def persist(session: AsyncSession) -> None:
        written.append("once")

    riders = [
        (fresh, BatchOutcome(processed=1, usage=Usage(keywords_clustered=1))),
        (failed, BatchOutcome(failures=[ItemFailure(item_id=2, reason="outlier")])),
        (earlier, BatchOutcome(processed=1)),
    ]

    async def work(cmd: StageCommand) -> BatchOutcome:
        return BatchOutcome(processed=1, persist=persist, along=riders)

    result = await execute_command(main, consumer=consumer, sessions=db, outbox=outbox, work=work)
    assert result is not None and written == ["once"]

    async with db() as s:
        found = await s.execute(
            select(InboxMessage.message_id, InboxMessage.result).where(InboxMessage.consumer == consumer)
        )
        inbox = dict(found.all())
        attempts = set(await s.scalars(select(DeliveryAttempt.message_id).where(DeliveryAttempt.consumer == consumer)))
        rows = (
            await s.scalars(select(OutboxMessage).where(OutboxMessage.producer == consumer).order_by(OutboxMessage.id))
        ).all()
    published = [StageResult.model_validate(r.payload) for r in rows if r.topic == STAGE_RESULTS]
    # Results in the pass's order, each the one kept with its inbox row (a command asked again gets it back).
    assert [p.command_id for p in published] == [main.message_id, fresh.message_id, failed.message_id]
    for p in published:
        assert StageResult.model_validate(inbox[p.command_id]) == p
    assert published[1].items_processed == 1 and published[1].usage.keywords_clustered == 1
    assert published[2].status.value == "failed" and published[2].failures[0].reason == "outlier"
    assert [r.key for r in rows if r.topic == COMMANDS_DLQ] == ["site-along"]  # the failed rider's items
    # The rider recorded earlier keeps its row as it was (no result here) and its count: that delivery settles it.
    assert inbox[earlier.message_id] is None
    assert attempts == {earlier.message_id}
    async with db.begin() as s:  # no relay sends this producer's rows: leave none behind
        await s.execute(delete(OutboxMessage).where(OutboxMessage.producer == consumer))
