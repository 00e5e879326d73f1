"""Thin handler: parse (or dead-letter) a stage-2 command and run it exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.ideator.service import IdeatorService
from shared.consume import Record, handle_stage_command
from shared.contracts import Stage
from shared.runtime import Runtime

STAGES = {Stage.IDEATE}


def make_handler(rt: Runtime, service: IdeatorService) -> Callable[[Record], Awaitable[None]]:
    async def on_ideate_command(record: Record) -> None:
        await handle_stage_command(rt, record, STAGES, service.work)

    return on_ideate_command
