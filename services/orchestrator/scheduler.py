"""Background loop of the orchestrator: stage deadlines and delays, due schedules, monthly credits.

Every replica runs it; the work is safe to race: runs are locked with SKIP LOCKED, due schedules are
claimed with SKIP LOCKED, and monthly grants are keyed by account and period in the ledger.
"""

from __future__ import annotations

import asyncio
import logging

from services.orchestrator.accounts.service import AccountService
from services.orchestrator.runs.service import RunService
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, runs: RunService, accounts: AccountService, every_seconds: float) -> None:
        self._runs = runs
        self._accounts = accounts
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    async def once(self) -> None:
        for name, step in (
            ("tick", self._runs.tick),
            ("schedules", self._runs.schedule_due),
            ("replenish", self._accounts.replenish_all),
        ):
            try:
                await step()
            except Exception:  # the DB may be briefly away; the next round tries again
                log.exception("%s failed", name)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.once()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="orchestrator-ticker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
