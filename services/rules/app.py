"""Rules process: `python -m services.rules`.

One consumer group over the entity events, and a ticker that fires due cron rules, retries pending executions
(a busy site's) and settles finished runs. Any number of replicas: tasks are unique per (rule, event or cron
instant), claimed with SKIP LOCKED, and a rule's daily counter is bumped under its row lock.

Actions that generate content start targeted runs through the run engine's public functions
(services.orchestrator.runs.service.RunService), with this process's outbox: the commands go out with the
task row that records them, and the orchestrator takes the run from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream import AckPolicy, FastStream

from services.orchestrator.costs import DEFAULT_COSTS, CostTable
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.service import RunService
from services.rules.handlers import make_handler
from services.rules.service import RuleService
from shared.kafka import RELAXED_CONSUMER_TUNING
from shared.runtime import Runtime
from shared.topics import ENTITY_EVENTS

GROUP = "contentline-rules"
log = logging.getLogger("rules")


def build_service(rt: Runtime) -> RuleService:
    s = rt.settings
    costs = CostTable.model_validate_json(s.cost_table_json) if s.cost_table_json else DEFAULT_COSTS
    runs = RunService(rt.sessions, Engine(rt.outbox, s, costs))
    return RuleService(rt.sessions, runs, rt.outbox, s.rules_busy_retry_seconds)


def create_app() -> FastStream:
    rt = Runtime.create("rules")
    service = build_service(rt)
    rt.broker.subscriber(
        ENTITY_EVENTS,
        group_id=GROUP,
        ack_policy=AckPolicy.NACK_ON_ERROR,  # commit after the handler (at-least-once)
        auto_offset_reset="earliest",
        max_poll_interval_ms=5 * 60 * 1000,
        title=f"rules:{ENTITY_EVENTS}",
        **RELAXED_CONSUMER_TUNING,
    )(make_handler(rt, service))
    ticker: list[asyncio.Task[None]] = []

    async def loop() -> None:
        while True:
            await asyncio.sleep(rt.settings.rules_tick_seconds)
            await service.tick()

    async def start_ticker() -> None:
        ticker.append(asyncio.create_task(loop(), name="rules-ticker"))

    async def stop_ticker() -> None:
        for task in ticker:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return FastStream(
        rt.broker,
        on_startup=[rt.on_startup],
        after_startup=[rt.after_startup, start_ticker],
        on_shutdown=[stop_ticker, rt.on_shutdown],
    )
