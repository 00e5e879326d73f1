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


async def with_infra_backoff(name: str, fn: Callable[[], Awaitable[None]]) -> None:
    """Run a handler body; on an unexpected error wait before re-raising so the nack is not a hot loop."""
    try:
        await fn()
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("%s: handler failed on infrastructure; redelivering after %.0fs", name, INFRA_BACKOFF_SECONDS)
        await asyncio.sleep(INFRA_BACKOFF_SECONDS)
        raise


# After this many failed deliveries of one command, its items are reported failed (and dead-lettered) so
# one poisonous batch cannot hold its site's partition forever. Counted per process: a restart starts over.
MAX_COMMAND_ATTEMPTS = 5
_failed_attempts: dict[str, int] = {}


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
        try:
            await execute_command(cmd, consumer=rt.name, sessions=rt.sessions, outbox=rt.outbox, work=work)
        except Exception as exc:
            attempts = _failed_attempts.get(cmd.message_id, 0) + 1
            _failed_attempts[cmd.message_id] = attempts
            if attempts < MAX_COMMAND_ATTEMPTS:
                raise
            reason = f"worker error after {attempts} attempts: {type(exc).__name__}: {str(exc)[:300]}"
            log.error("command %s (stage %s): %s; reporting its items failed", cmd.message_id, cmd.stage, reason)
            # If the database itself is down this raises too, and the command is simply redelivered later.
            await execute_command(
                cmd, consumer=rt.name, sessions=rt.sessions, outbox=rt.outbox, work=_fail_all(cmd, reason)
            )
        _failed_attempts.pop(cmd.message_id, None)

    await with_infra_backoff(rt.name, run)
