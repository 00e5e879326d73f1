"""Thin handler: parse (or dead-letter) a stage-1 command and run it exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.clusterer.service import ClustererService
from shared.consume import Record, handle_stage_command
from shared.contracts import Stage
from shared.runtime import Runtime

STAGES = {Stage.CLUSTER}


def make_handler(rt: Runtime, service: ClustererService) -> Callable[[Record], Awaitable[None]]:
    async def on_cluster_command(record: Record) -> None:
        await handle_stage_command(rt, record, STAGES, service.work)

    return on_cluster_command
