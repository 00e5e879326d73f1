"""Orchestrator process: REST API + Kafka consumers + ticker. `python -m services.orchestrator`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream import AckPolicy

from services.orchestrator import api
from services.orchestrator.costs import DEFAULT_COSTS, CostTable
from services.orchestrator.handlers import make_ingest_handler, make_result_handler
from services.orchestrator.operations import OutboxOperations
from services.orchestrator.review import ReviewService
from services.orchestrator.scheduler import Ticker
from services.orchestrator.service import RunQueries, RunService
from shared.kafka import CONSUMER_TUNING
from shared.runtime import Runtime
from shared.topics import KEYWORDS_INGEST, STAGE_RESULTS

GROUP = "contentline-orchestrator"


def wire(rt: Runtime) -> tuple[RunService, RunQueries]:
    costs = CostTable.model_validate_json(rt.settings.cost_table_json) if rt.settings.cost_table_json else DEFAULT_COSTS
    runs = RunService(rt.sessions, rt.outbox, rt.settings, costs)
    for topic, handler in (
        (STAGE_RESULTS, make_result_handler(rt, runs)),
        (KEYWORDS_INGEST, make_ingest_handler(rt, runs)),
    ):
        rt.broker.subscriber(
            topic,
            group_id=GROUP,
            ack_policy=AckPolicy.NACK_ON_ERROR,  # commit after the handler; infra errors redeliver after back-off
            auto_offset_reset="earliest",
            max_poll_interval_ms=10 * 60 * 1000,
            title=f"orchestrator:{topic}",
            **CONSUMER_TUNING,  # fetch wait in tens of ms (shared.kafka)
        )(handler)
    return runs, RunQueries(rt.sessions)


def create_app() -> FastAPI:
    rt = Runtime.create("orchestrator")
    runs, queries = wire(rt)
    ticker = Ticker(runs, rt.settings.tick_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rt.on_startup()
        await runs.bootstrap()
        await rt.broker.start()
        await rt.after_startup()
        ticker.start()
        try:
            yield
        finally:
            await ticker.stop()
            await rt.broker.stop()
            await rt.on_shutdown()

    app = FastAPI(title="contentline orchestrator", version="1", lifespan=lifespan)
    api.install(app, runs, queries, ReviewService(rt.sessions, rt.outbox), OutboxOperations(rt.sessions))
    return app
