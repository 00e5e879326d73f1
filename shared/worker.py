"""The flow every stage worker shares, free of Kafka: one statement before the work, one transaction after it.

1. Before the work, one statement: a command already in the inbox is a duplicate (asked again by the
   orchestrator, or redelivered after a crash or rebalance): the result stored with its inbox row is put in
   the outbox again (same message id, same content; no model call) and that settles it. Otherwise one more
   attempt is counted (bounded retries, shared.consume) and committed before the work starts.
2. The service does its work outside any transaction (model calls are slow) and hands back a
   `BatchOutcome` whose `persist` writes the results.
3. After the work, one transaction: persist, claim the inbox row with the result payload and forget the
   attempt count (one statement), store usage records, add the result event (and a dead-letter record for
   failed items) to the outbox; the same for every command whose items the persist wrote too
   (`BatchOutcome.along`). A crash anywhere before commit loses nothing: the command is redelivered and only
   items without committed results are worked again. A concurrent duplicate (across a rebalance) blocks on
   the first one's rows (every persist skips conflicting inserts), then fails its claim and rolls back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.ai import CallRecord
from shared.contracts import ItemFailure, ResultStatus, StageCommand, StageResult, Usage
from shared.db.models import AiCall
from shared.db.session import autocommit
from shared.delivery import (
    Outbox,
    Processed,
    claim_inbox_with_results,
    claim_settled,
    drop_attempts_of,
    start_or_recall,
)
from shared.entity_events import EntityEvent
from shared.topics import COMMANDS_DLQ, ENTITY_EVENTS, STAGE_RESULTS
from shared.turns import end_turn, turn_began

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    processed: int = 0
    created: int = 0
    skipped: int = 0
    failures: list[ItemFailure] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    calls: list[CallRecord] = field(default_factory=list)
    persist: Callable[[AsyncSession], Awaitable[None]] | None = None
    # Filled by `persist` with what it really inserted: announced in the same transaction (issue 15).
    events: list[EntityEvent] = field(default_factory=list)
    # Other commands whose items `persist` writes too (the clusterer's riders, services/clusterer/convoy.py):
    # their results are recorded in the same transaction, each under its own inbox row.
    along: list[tuple[StageCommand, BatchOutcome]] = field(default_factory=list)
    # Called once the result transaction committed, before the key's next record may begin its ordered part
    # (the clusterer lets the batches it took along go here).
    committed: Callable[[], None] | None = None


class FailedItems(StageResult):
    """Dead-letter copy of a result's failed items, for operators inspecting the DLQ topic."""


Work = Callable[[StageCommand], Awaitable[BatchOutcome]]


# A result must fit one Kafka record (1 MB by default) even for a 1000-item batch that failed whole.
MAX_REASON = 300


def short(failure: ItemFailure) -> ItemFailure:
    if len(failure.reason) <= MAX_REASON:
        return failure
    return failure.model_copy(update={"reason": failure.reason[: MAX_REASON - 3] + "..."})


def result_status(items_in: int, failures: int) -> ResultStatus:
    if failures == 0:
        return ResultStatus.OK
    return ResultStatus.FAILED if failures >= items_in else ResultStatus.PARTIAL


async def begin_command(
    cmd: StageCommand, *, consumer: str, sessions: async_sessionmaker[AsyncSession], outbox: Outbox
) -> tuple[int, str | None] | None:
    """Step 1: None when the command was handled before (its stored result is re-published), else the
    attempt count taken for this delivery, as (attempts, last error)."""
    async with autocommit(sessions) as session:
        done = await start_or_recall(session, consumer, cmd.message_id)
    if not isinstance(done, Processed):
        return done
    if done.result is None:  # handled before results were kept with the inbox
        log.info("duplicate command %s (stage %s) skipped: no stored result", cmd.message_id, cmd.stage)
        return None
    result = StageResult.model_validate(done.result)
    async with sessions.begin() as session:
        outbox.add(session, STAGE_RESULTS, cmd.site_id, result)
    outbox.committed()
    log.info(
        "command %s (stage %s) asked again: answered with stored result %s",
        cmd.message_id,
        cmd.stage,
        result.message_id,
    )
    return None


async def execute_command(
    cmd: StageCommand,
    *,
    consumer: str,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    work: Work,
) -> StageResult | None:
    """Steps 2 and 3: run one stage command; returns the result, or None if another delivery won."""
    started = time.perf_counter()
    outcome = await work(cmd)
    # From its turn on where it waited for one (the clusterer): what came before overlapped another's.
    began = max(started, turn_began() or started)
    async with sessions.begin() as session:
        if outcome.persist is not None:
            await outcome.persist(session)  # sets outcome.created from the rows really inserted
        result = await record_result(session, cmd, outcome, consumer, outbox, began)
        if result is None:
            await session.rollback()  # a concurrent delivery committed first; its result stands
            return None
        await record_along(session, outcome.along, consumer, outbox, began)
    if outcome.committed is not None:
        outcome.committed()
    end_turn()  # committed: the next command of the key may begin its ordered part (the clusterer's)
    outbox.committed()
    return result


async def record_result(
    session: AsyncSession, cmd: StageCommand, outcome: BatchOutcome, consumer: str, outbox: Outbox, began: float
) -> StageResult | None:
    """The command's result in the worker's transaction, after the persist: its inbox row claimed with the
    result kept and the attempt count forgotten (one statement), usage records, the result event (and dead
    letters, entity events) in the outbox. None when another delivery claimed the row first."""
    result = result_of(cmd, outcome, consumer, began)
    if not await claim_settled(session, consumer, cmd.message_id, result.model_dump(mode="json")):
        return None
    await announce(session, cmd, outcome, result, consumer, outbox)
    return result


async def record_along(
    session: AsyncSession,
    along: list[tuple[StageCommand, BatchOutcome]],
    consumer: str,
    outbox: Outbox,
    began: float,
) -> None:
    """`record_result` for the commands whose items the persist wrote too (a clusterer pass's riders, ~20 of
    them): their inbox rows are claimed with their results in one statement, their attempt counts dropped in
    one, instead of four statements each on a site's clustering path. A rider another delivery recorded
    first keeps that result (its row is not claimed here)."""
    if not along:
        return
    results = {other.message_id: (other, its, result_of(other, its, consumer, began)) for other, its in along}
    claimed = await claim_inbox_with_results(
        session, consumer, {m: result.model_dump(mode="json") for m, (_, _, result) in results.items()}
    )
    await drop_attempts_of(session, consumer, sorted(claimed))
    for message_id, (other, its, result) in results.items():  # in the pass's order
        if message_id in claimed:
            await announce(session, other, its, result, consumer, outbox)


def result_of(cmd: StageCommand, outcome: BatchOutcome, consumer: str, began: float) -> StageResult:
    return StageResult(
        command_id=cmd.message_id,
        account_id=cmd.account_id,
        site_id=cmd.site_id,
        run_id=cmd.run_id,
        stage=cmd.stage,
        batch_seq=cmd.batch_seq,
        attempt=cmd.attempt,
        status=result_status(len(cmd.item_ids), len(outcome.failures)),
        items_in=len(cmd.item_ids),
        items_processed=outcome.processed,
        items_created=outcome.created,
        items_skipped=outcome.skipped,
        failures=[short(f) for f in outcome.failures],
        usage=outcome.usage,
        seconds=round(time.perf_counter() - began, 3),
        worker=consumer,
    )


async def announce(
    session: AsyncSession, cmd: StageCommand, outcome: BatchOutcome, result: StageResult, consumer: str, outbox: Outbox
) -> None:
    """The usage records and the outbox rows of a recorded result (the outbox rows flushed with the transaction).
    The usage records go in as parameters of one statement: nothing reads them back here, so they need no
    place in the session (no unit of work, no ids fetched back for them)."""
    calls = [
        {"service": consumer, "run_id": cmd.run_id, "command_id": cmd.message_id, **c.columns()} for c in outcome.calls
    ]
    if calls:
        await session.execute(insert(AiCall), calls)
    outbox.add(session, STAGE_RESULTS, cmd.site_id, result)
    for event in outcome.events:
        outbox.add(session, ENTITY_EVENTS, cmd.site_id, event)
    if outcome.failures:
        outbox.add(session, COMMANDS_DLQ, cmd.site_id, FailedItems(**result.model_dump(exclude={"message_id"})))
