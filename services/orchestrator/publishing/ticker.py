"""The publishing schedule's own loop in every orchestrator replica: hand due drafts to the publisher, try
waiting drafts again. Safe to race: due rows are claimed with SKIP LOCKED, slots are assigned under the
site's lock (services.orchestrator.publishing.scheduling)."""

from __future__ import annotations

import asyncio
import logging

from services.orchestrator.publishing.service import PublishingService
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class PublishingTicker:
    def __init__(self, publishing: PublishingService, every_seconds: float) -> None:
        self._publishing = publishing
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self._publishing.tick()
            except Exception:  # the DB may be briefly away; the next round tries again
                log.exception("publishing tick failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="publishing-ticker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
