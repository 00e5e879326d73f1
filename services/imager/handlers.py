"""Thin handler: parse (or dead-letter) a stage-5/6 command and run it exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.imager.service import ImagerService
from shared.consume import Record, handle_stage_command
from shared.contracts import Stage
from shared.runtime import Runtime

STAGES = {Stage.IMAGE_PROMPTS, Stage.IMAGES}


def make_handler(rt: Runtime, service: ImagerService) -> Callable[[Record], Awaitable[None]]:
    async def on_image_command(record: Record) -> None:
        await handle_stage_command(rt, record, STAGES, service.work)

    return on_image_command
