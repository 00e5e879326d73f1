"""Thin Kafka handler: parse (or dead-letter) a stage-3/4 command and run it exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.writer.service import WriterService
from shared.consume import handle_stage_command
from shared.contracts import Stage
from shared.runtime import Runtime

STAGES = {Stage.TASKS, Stage.DRAFTS}


def make_handler(rt: Runtime, service: WriterService) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def on_write_command(msg: KafkaMessage) -> None:
        await handle_stage_command(rt, msg, STAGES, service.work)

    return on_write_command
