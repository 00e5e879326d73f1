"""Consumer-side helpers shared by the handlers: parse or dead-letter, bounded attempts, the stage-command flow.

Every record is settled within a bounded number of attempts, counted in the database BEFORE anything is
sent or worked (issue 9): a record that cannot be parsed, whose dead-letter copy the broker refuses, or
whose handling keeps failing is given up on after MAX_ATTEMPTS (with back-off between attempts), so it can
never hold its partition. Outages (database or broker unreachable) are not the record's fault: they are
retried without limit and do not use up attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import ItemFailure, Stage, StageCommand
from shared.delivery import count_attempt, forget_attempts, note_attempt_failed
from shared.kafka import dead_letter
from shared.runtime import Runtime
from shared.topics import COMMANDS_DLQ
from shared.worker import BatchOutcome, Work, begin_command, execute_command

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# Back-off between attempts: doubling from a quarter second, capped here; outages wait the cap.
INFRA_BACKOFF_SECONDS = 3.0
# A body this large is parsed in a thread, so a multi-MiB record cannot stall the event loop.
_PARSE_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Record:
    """What the handlers need of a consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, msg: KafkaMessage) -> Record:
        raw = msg.raw_message
        assert not isinstance(raw, tuple), "a batch subscriber's message: use records_of"
        return cls(raw.topic, raw.partition, raw.offset, raw.key, raw.value or b"")

    @property
    def attempt_key(self) -> str:
        """A record with no usable message id is counted by where it sits (one consumer reads one topic)."""
        return f"record:{self.partition}:{self.offset}"


def records_of(msg: KafkaMessage) -> list[Record]:
    """The records of a (batch) subscriber's message, in the order the consumer returned them."""
    raw = msg.raw_message
    records = raw if isinstance(raw, tuple) else (raw,)
    return [Record(r.topic, r.partition, r.offset, r.key, r.value or b"") for r in records]


def describe_validation_error(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in exc.errors()[:10]]
    return "invalid message: " + "; ".join(parts)


async def _validate(model: type[M], raw: bytes) -> M:
    if len(raw) > _PARSE_INLINE_BYTES:
        return await asyncio.to_thread(model.model_validate_json, raw)
    return model.model_validate_json(raw)


async def parse_record(
    broker: KafkaBroker,
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    record: Record,
    model: type[M],
    dlq_topic: str,
) -> M | None:
    """The record as `model`, or None once it is parked on the dead-letter topic with the reason."""
    try:
        return await _validate(model, record.value)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
    await dead_letter_counted(broker, sessions, name, record, dlq_topic, reason)
    return None


async def dead_letter_record(
    broker: KafkaBroker, dlq_topic: str, record: Record, reason: str, key: bytes | None = None
) -> None:
    """Copy `record` to `dlq_topic` with the reason and where it came from (raises if the broker refuses)."""
    await dead_letter(
        broker,
        dlq_topic,
        record.value,
        key if key is not None else record.key,
        reason,
        record.topic,
        partition=record.partition,
        offset=record.offset,
    )


async def dead_letter_counted(
    broker: KafkaBroker,
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    record: Record,
    dlq_topic: str,
    reason: str,
) -> None:
    """Dead-letter a record as one bounded attempt: a copy the broker refuses counts, and after MAX_ATTEMPTS
    the record is given up on (logged with its size, SHA-256 and the reasons) so the partition moves on."""

    async def send() -> None:
        await dead_letter_record(broker, dlq_topic, record, reason)

    async def give_up(why: str) -> None:
        log.error(
            "%s: record %s[%d]@%d (%d bytes, sha256 %s) dropped: it could not be dead-lettered (%s); it was "
            "unusable because %s",
            name,
            record.topic,
            record.partition,
            record.offset,
            len(record.value),
            hashlib.sha256(record.value).hexdigest(),
            why,
            reason[:300],
        )

    await bounded(sessions, name, record.attempt_key, send, give_up)


# A message whose handling keeps failing is retried after a back-off (never in a hot loop) a bounded
# number of times, then handed to `on_exhausted` (dead letter, or failed items reported), so one
# poisonous record cannot hold its partition forever. The count lives in the database (delivery_attempts)
# and is taken before the work starts: restarts, rebalances and a message that kills its process all count.
MAX_ATTEMPTS = 5


def is_outage(exc: BaseException) -> bool:
    """True when the failure is the infrastructure's (connection lost, timeout), not the message's."""
    if isinstance(exc, OSError | TimeoutError | KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


def backoff_seconds(attempts: int | None) -> float:
    """0.25 s, 0.5 s, 1 s ... up to INFRA_BACKOFF_SECONDS; an outage (attempts None) waits the cap."""
    if attempts is None:
        return INFRA_BACKOFF_SECONDS
    return min(INFRA_BACKOFF_SECONDS, 0.25 * (1 << min(max(attempts - 1, 0), 16)))


# Starts an attempt: returns (attempts so far, last error), or None when the message turned out settled.
Start = Callable[[], Awaitable[tuple[int, str | None] | None]]


async def bounded(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    key: str,
    fn: Callable[[], Awaitable[None]],
    on_exhausted: Callable[[str], Awaitable[None]],
    *,
    start: Start | None = None,
    forget: bool = True,
) -> None:
    """Run `fn` as one counted attempt; raise (after a back-off) for the record to be tried again.

    `start` replaces the plain count when the caller checks more in the same transaction (a worker answers
    a duplicate from its inbox there); `forget=False` when `fn` clears the count in its own transaction.
    """
    try:
        started = await (start() if start is not None else count_attempt(sessions, name, key))
    except Exception:  # the database is unreachable: nothing can be done or counted, try again later
        log.exception("%s: cannot count an attempt on %s; trying again in %.1fs", name, key, backoff_seconds(None))
        await asyncio.sleep(backoff_seconds(None))
        raise
    if started is None:
        return
    attempts, last_error = started
    if attempts > MAX_ATTEMPTS:  # earlier deliveries failed, or died without a word (crash, OOM kill)
        why = last_error or "the handler never finished (its process died while handling the message)"
        reason = f"gave up after {attempts - 1} attempts: {why}"
        log.error("%s: message %s: %s", name, key, reason)
        await _hand_over(on_exhausted, reason, name, key)
        await _forget(sessions, name, key)
        return
    try:
        await fn()
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        outage = is_outage(exc)
        if outage or attempts < MAX_ATTEMPTS:
            with contextlib.suppress(Exception):  # the reason is a courtesy; the count already stands
                await note_attempt_failed(sessions, name, key, error, counts=not outage)
            pause = backoff_seconds(None if outage else attempts)
            log.exception(
                "%s: message %s failed (%s); trying again in %.2fs",
                name,
                key,
                "outage, not counted" if outage else f"attempt {attempts} of {MAX_ATTEMPTS}",
                pause,
            )
            await asyncio.sleep(pause)
            raise
        reason = f"failed {attempts} times: {error}"
        log.error("%s: message %s %s; giving up on it", name, key, reason)
        await _hand_over(on_exhausted, reason, name, key)
        await _forget(sessions, name, key)
        return
    if forget:
        await _forget(sessions, name, key)


async def _hand_over(on_exhausted: Callable[[str], Awaitable[None]], reason: str, name: str, key: str) -> None:
    """Give the message up. If even that fails, an outage is retried; anything else is logged and the
    message dropped: a hand-over that cannot succeed must not hold the partition either."""
    try:
        await on_exhausted(reason)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if is_outage(exc):
            log.exception("%s: cannot give up %s during an outage; trying again", name, key)
            await asyncio.sleep(backoff_seconds(None))
            raise
        log.exception("%s: message %s dropped: %s; handing it over failed too", name, key, reason)


async def _forget(sessions: async_sessionmaker[AsyncSession], name: str, key: str) -> None:
    try:
        await forget_attempts(sessions, name, key)
    except Exception:  # a leftover count is pruned with the inbox; the work itself is committed
        log.warning("%s: could not clear the attempt count of %s", name, key, exc_info=True)


def _fail_all(cmd: StageCommand, reason: str) -> Work:
    async def work(_: StageCommand) -> BatchOutcome:
        return BatchOutcome(failures=[ItemFailure(item_id=i, reason=reason) for i in cmd.item_ids])

    return work


async def handle_stage_command(rt: Runtime, record: Record, stages: Collection[Stage], work: Work) -> None:
    """One attempt at a stage command: parse or dead-letter, then execute exactly once in effect.

    Raises (after a back-off) when the attempt failed and the command should be tried again.
    """
    cmd = await parse_record(rt.broker, rt.sessions, rt.name, record, StageCommand, COMMANDS_DLQ)
    if cmd is None:
        return
    if cmd.stage not in stages:
        reason = f"stage {int(cmd.stage)} is not handled here (expects {sorted(int(s) for s in stages)})"
        await dead_letter_counted(rt.broker, rt.sessions, rt.name, record, COMMANDS_DLQ, reason)
        return

    async def begin() -> tuple[int, str | None] | None:
        return await begin_command(cmd, consumer=rt.name, sessions=rt.sessions, outbox=rt.outbox)

    async def run() -> None:
        await execute_command(cmd, consumer=rt.name, sessions=rt.sessions, outbox=rt.outbox, work=work)

    async def report_failed(reason: str) -> None:
        # The items are reported failed to the orchestrator (and copied to the dead-letter topic).
        await execute_command(
            cmd,
            consumer=rt.name,
            sessions=rt.sessions,
            outbox=rt.outbox,
            work=_fail_all(cmd, f"worker error: {reason}"),
        )

    # A duplicate arriving while this command is worked waits here, then is answered from the inbox.
    async with rt.exclusive.hold(cmd.message_id):
        await bounded(rt.sessions, rt.name, cmd.message_id, run, report_failed, start=begin, forget=False)
