"""Consumer-side helpers shared by the handlers: parse-or-dead-letter, infra-failure backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from pydantic import BaseModel, ValidationError

from shared.contracts import ItemFailure, Stage, StageCommand
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
# poisonous record cannot hold its partition forever. Counted per process: a restart starts over.
MAX_ATTEMPTS = 5
_failed_attempts: dict[str, int] = {}


async def bounded(
    name: str, key: str, fn: Callable[[], Awaitable[None]], on_exhausted: Callable[[str], Awaitable[None]]
) -> None:
    try:
        await fn()
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        attempts = _failed_attempts.get(key, 0) + 1
        _failed_attempts[key] = attempts
        if attempts < MAX_ATTEMPTS:
            log.exception(
                "%s: message %s failed (attempt %d); redelivering after %.0fs",
                name,
                key,
                attempts,
                INFRA_BACKOFF_SECONDS,
            )
            await asyncio.sleep(INFRA_BACKOFF_SECONDS)
            raise
        reason = f"failed {attempts} times: {type(exc).__name__}: {str(exc)[:300]}"
        log.error("%s: message %s %s; giving up on it", name, key, reason)
        await on_exhausted(reason)  # if this fails too (database down), the message is simply redelivered
    _failed_attempts.pop(key, None)


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

    await bounded(rt.name, cmd.message_id, run, report_failed)
