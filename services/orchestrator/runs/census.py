"""How many worker processes take each stage's commands, read from the broker: the release window scales with
them (runs/window.py).

Why. A run keeps `Settings.release_window` batches out at once: twice the model calls one worker process makes
at a time, so a freed slot finds the next command already there. With a second process of the stage worker the
provider may take twice the calls, but a fixed window still let only as many batches out as one process
needs: two replicas of each worker made the model-bound stages 0.8× as long instead of about half
(bench/pipeline.py). The window is therefore per process: `release_window × processes`.

Processes are the members of the stage worker's consumer group (`shared.topics.COMMAND_GROUPS`) that hold at
least one partition of the command topic, as the group coordinator describes them, refreshed every
`Settings.worker_census_seconds` in the background. Until the first answer, and for a group with no member
(workers down: nothing is taken anyway), a stage counts one process. A failed read keeps the last figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient

from shared.inspection.lag import group_members
from shared.metrics.families import STAGE_WORKER_PROCESSES
from shared.tasks import cancel_and_wait
from shared.topics import COMMAND_GROUPS

log = logging.getLogger(__name__)


class WorkerCensus:
    def __init__(self, bootstrap: str, interval_seconds: float, groups: dict[str, str] | None = None) -> None:
        self._bootstrap = bootstrap
        self._interval = interval_seconds
        self._groups = dict(COMMAND_GROUPS if groups is None else groups)  # command topic -> consumer group
        self._counts: dict[str, int] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def processes(self, topic: str) -> int:
        """Worker processes taking `topic`'s commands (at least 1)."""
        return max(1, self._counts.get(topic, 1))

    async def refresh(self) -> dict[str, int]:
        """Read every group once; returns {topic: processes holding a partition of it}."""
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id="contentline-census")
            await self._admin.start()
        counts = {}
        for topic, group in self._groups.items():
            members = await group_members(self._admin, group)
            counts[topic] = sum(1 for m in members if any(p.rsplit("/", 1)[0] == topic for p in m.partitions))
        for topic, n in counts.items():
            if n != self._counts.get(topic):
                log.info("%s: %d worker process(es) take its commands", topic, n)
            STAGE_WORKER_PROCESSES.labels(topic=topic).set(n)
        self._counts = counts
        return counts

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
                self._failing = False
            except Exception as exc:  # the broker away: keep the last figures, say so once
                if not self._failing:
                    log.warning("worker census: cannot read the consumer groups (%s); keeping the last figures", exc)
                self._failing = True
                await self._drop_admin()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="worker-census")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._drop_admin()

    async def _drop_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
