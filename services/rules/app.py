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
import logging

from faststream import AckPolicy, FastStream

from services.orchestrator.costs import DEFAULT_COSTS, CostTable
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.service import RunService
from services.rules.handlers import make_handler
from services.rules.service import RuleService
from shared.kafka import RELAXED_CONSUMER_TUNING
from shared.runtime import Runtime
from shared.tasks import cancel_and_wait
from shared.topics import ENTITY_EVENTS

GROUP = "contentline-rules"
# A 1,500-keyword import sends 1,500 keyword_added events: one lookup per batch of up to this many instead of
# one per event (the rules service took 3.5 CPU-s of a 25 s run on 2 cores with one per event).
EVENTS_BATCH_MAX = 500
EVENTS_BATCH_WAIT_MS = 50
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
        # Whatever the consumer has buffered, up to EVENTS_BATCH_MAX, is one batch: one rule lookup for all.
        batch=True,
        max_records=EVENTS_BATCH_MAX,
        batch_timeout_ms=EVENTS_BATCH_WAIT_MS,
        # Commit after the handler (at-least-once); a batch that raises is rewound to its first record per
        # partition, and what it already handled is not repeated (tasks are unique per rule and event).
        ack_policy=AckPolicy.NACK_ON_ERROR,
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
            await cancel_and_wait(task)

    return FastStream(
        rt.broker,
        on_startup=[rt.on_startup],
        after_startup=[rt.after_startup, start_ticker],
        on_shutdown=[stop_ticker, rt.on_shutdown],
    )
