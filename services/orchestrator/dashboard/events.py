"""The run events, fanned out in-process to the dashboard's push streams.

One Kafka consumer per orchestrator process reads `contentline.run.events` from the latest offset with no
consumer group and commits nothing: a page needs what happens from now on, and every replica sees every
event (a group would split them between replicas). Each open stream subscribes to one site; an event for
that site wakes it, and the stream renders what changed from the database (the source of truth), so a
burst of events becomes one push and a lost wake-up costs nothing but a late refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import defaultdict
from collections.abc import Callable
from types import FrameType
from typing import Any

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from shared.contracts import RunEvent
from shared.kafka import RELAXED_CONSUMER_TUNING
from shared.topics import RUN_EVENTS

log = logging.getLogger(__name__)


class Subscription:
    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self.wake = asyncio.Event()
        self.closed = False
        self.last: RunEvent | None = None

    def push(self, event: RunEvent | None) -> None:
        if event is not None:
            self.last = event
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class RunEventHub:
    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, site_id: str) -> Subscription:
        sub = Subscription(site_id)
        self._subs[site_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.site_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.site_id]

    def publish(self, event: RunEvent) -> None:
        for sub in list(self._subs.get(event.site_id, ())):
            sub.push(event)

    def close_streams(self) -> None:
        """End every open stream (server shutdown: open streams would otherwise hold it up)."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()

    # ------------------------------------------------------------------ the consumer
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # No group: aiokafka assigns every partition of the topic to this consumer (and new ones as they
        # appear); without committed offsets, `latest` starts each at its end.
        consumer = AIOKafkaConsumer(
            RUN_EVENTS,
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            client_id="contentline-orchestrator-dashboard",
            **RELAXED_CONSUMER_TUNING,  # people watching a page: a quarter second is not noticed (shared.kafka)
        )
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="dashboard-run-events")
        self._chain_shutdown_signals()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker away for a moment: the pages refresh once it is back
                log.warning("reading run events failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for record in records:
                    self.received += 1
                    try:
                        event = RunEvent.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue  # not for us to judge: the topic's consumers dead-letter, observers skip
                    self.publish(event)

    async def stop(self) -> None:
        self.close_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def _chain_shutdown_signals(self) -> None:
        """uvicorn waits for open responses before it shuts the app down, and a push stream never ends by
        itself: on SIGTERM/SIGINT end the streams first, then let uvicorn's own handler run."""
        loop = self._loop
        assert loop is not None

        def chain(previous: Callable[[int, FrameType | None], Any]) -> Callable[[int, FrameType | None], Any]:
            def handler(signum: int, frame: FrameType | None) -> Any:
                loop.call_soon_threadsafe(self.close_streams)
                return previous(signum, frame)

            return handler

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                with contextlib.suppress(ValueError):  # not the main thread (an in-process test client)
                    signal.signal(sig, chain(previous))
