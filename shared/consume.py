"""Consumer-side helpers shared by the handlers: parse-or-dead-letter, infra-failure backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
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
from shared.worker import BatchOutcome, Work, execute_command

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# A handler that fails on infrastructure (DB down, broker hiccup) is redelivered, but not in a tight loop.
INFRA_BACKOFF_SECONDS = 3.0


def describe_validation_error(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in exc.errors()[:10]]
    return "invalid message: " + "; ".join(parts)


async def parse_or_dead_letter(broker: KafkaBroker, msg: KafkaMessage, model: type[M], dlq_topic: str) -> M | None:
    """The message as `model`, or None after parking it on the dead-letter topic with the reason."""
    raw = msg.body if isinstance(msg.body, bytes) else bytes(msg.body)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
    key = msg.raw_message.key if hasattr(msg.raw_message, "key") else None
    await dead_letter(broker, dlq_topic, raw, key, reason, source_topic=getattr(msg.raw_message, "topic", "?"))
    return None


async def parse_command(
    broker: KafkaBroker, msg: KafkaMessage, stages: Collection[Stage], dlq_topic: str
) -> StageCommand | None:
    cmd = await parse_or_dead_letter(broker, msg, StageCommand, dlq_topic)
    if cmd is not None and cmd.stage not in stages:
        reason = f"stage {int(cmd.stage)} is not handled here (expects {sorted(int(s) for s in stages)})"
        await dead_letter(broker, dlq_topic, msg.body, None, reason, getattr(msg.raw_message, "topic", "?"))
        return None
    return cmd


# A message whose handling keeps failing is retried after a back-off (never in a hot loop) a bounded
# number of times, then handed to `on_exhausted` (dead letter, or failed items reported), so one
# poisonous record cannot hold its partition forever. The count lives in the database (delivery_attempts)
# and is taken before the work starts: restarts, rebalances and a message that kills its process all count.
# Outages (database or broker unreachable) are not the message's fault: they are retried without limit.
MAX_ATTEMPTS = 5


def is_outage(exc: BaseException) -> bool:
    """True when the failure is the infrastructure's (connection lost, timeout), not the message's."""
    if isinstance(exc, OSError | TimeoutError | KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


async def bounded(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    key: str,
    fn: Callable[[], Awaitable[None]],
    on_exhausted: Callable[[str], Awaitable[None]],
) -> None:
    try:
        attempts, last_error = await count_attempt(sessions, name, key)
    except Exception:  # the database is unreachable: nothing can be done or counted, redeliver later
        log.exception("%s: cannot count an attempt on %s; redelivering after %.0fs", name, key, INFRA_BACKOFF_SECONDS)
        await asyncio.sleep(INFRA_BACKOFF_SECONDS)
        raise
    if attempts > MAX_ATTEMPTS:  # earlier deliveries failed, or died without a word (crash, OOM kill)
        why = last_error or "the handler never finished (its process died while handling the message)"
        reason = f"gave up after {attempts - 1} attempts: {why}"
        log.error("%s: message %s: %s", name, key, reason)
        await on_exhausted(reason)  # if this fails too (database down), the message is simply redelivered
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
            log.exception(
                "%s: message %s failed (%s); redelivering after %.0fs",
                name,
                key,
                "outage, not counted" if outage else f"attempt {attempts} of {MAX_ATTEMPTS}",
                INFRA_BACKOFF_SECONDS,
            )
            await asyncio.sleep(INFRA_BACKOFF_SECONDS)
            raise
        reason = f"failed {attempts} times: {error}"
        log.error("%s: message %s %s; giving up on it", name, key, reason)
        await on_exhausted(reason)
    await _forget(sessions, name, key)


async def _forget(sessions: async_sessionmaker[AsyncSession], name: str, key: str) -> None:
    try:
        await forget_attempts(sessions, name, key)
    except Exception:  # a leftover count is pruned with the inbox; the work itself is committed
        log.warning("%s: could not clear the attempt count of %s", name, key, exc_info=True)


def _fail_all(cmd: StageCommand, reason: str) -> Work:
    async def work(_: StageCommand) -> BatchOutcome:
        return BatchOutcome(failures=[ItemFailure(item_id=i, reason=reason) for i in cmd.item_ids])

    return work


async def handle_stage_command(rt: Runtime, msg: KafkaMessage, stages: Collection[Stage], work: Work) -> None:
    """The whole handler of a stage worker: parse or dead-letter, then execute exactly once in effect."""
    cmd = await parse_command(rt.broker, msg, stages, COMMANDS_DLQ)
    if cmd is None:
        return

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

    await bounded(rt.sessions, rt.name, cmd.message_id, run, report_failed)
