"""Background loop of the orchestrator: stage deadlines and nudging running runs (schedules come later)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.orchestrator.service import RunService

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, runs: RunService, every_seconds: float) -> None:
        self._runs = runs
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self._runs.tick()
            except Exception:  # the DB may be briefly away; the next tick tries again
                log.exception("tick failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="orchestrator-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
