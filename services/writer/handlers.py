"""Thin handler: parse (or dead-letter) a stage-3/4 command and run it exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.writer.service import WriterService
from shared.consume import Record, handle_stage_command
from shared.contracts import Stage
from shared.runtime import Runtime

STAGES = {Stage.TASKS, Stage.DRAFTS}


def make_handler(rt: Runtime, service: WriterService) -> Callable[[Record], Awaitable[None]]:
    async def on_write_command(record: Record) -> None:
        await handle_stage_command(rt, record, STAGES, service.work)

    return on_write_command
