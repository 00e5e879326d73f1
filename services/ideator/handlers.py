"""Thin Kafka handler: parse (or dead-letter) a stage-2 command and run it exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.ideator.service import IdeatorService
from shared.consume import handle_stage_command
from shared.contracts import Stage
from shared.runtime import Runtime

STAGES = {Stage.IDEATE}


def make_handler(rt: Runtime, service: IdeatorService) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def on_ideate_command(msg: KafkaMessage) -> None:
        await handle_stage_command(rt, msg, STAGES, service.work)

    return on_ideate_command
