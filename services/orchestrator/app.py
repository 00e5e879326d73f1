"""Orchestrator process: REST API + Kafka consumers + ticker. `python -m services.orchestrator`.

Wiring only: one service per domain (accounts, sites, runs, review, ops), their routers, the Kafka
handlers, the ticker, authentication, problem bodies and the offline API docs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline
from faststream import AckPolicy

from services.orchestrator import keys
from services.orchestrator.accounts import router as accounts_router
from services.orchestrator.accounts.service import AccountService
from services.orchestrator.automation import rules_router, webhooks_router
from services.orchestrator.content import router as content_router
from services.orchestrator.content.service import ContentService
from services.orchestrator.costs import DEFAULT_COSTS, CostTable
from services.orchestrator.dashboard import app as dashboard_app
from services.orchestrator.dashboard.context import Dashboard
from services.orchestrator.dashboard.events import RunEventHub
from services.orchestrator.dashboard.render import Templates
from services.orchestrator.dashboard.session import Sessions
from services.orchestrator.handlers import make_ingest_handler, make_result_handler
from services.orchestrator.ops import router as ops_router
from services.orchestrator.ops.service import OpsService
from services.orchestrator.review import router as review_router
from services.orchestrator.review.curation import DraftCuration
from services.orchestrator.review.service import ReviewService
from services.orchestrator.runs import router as runs_router
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.service import RunService, held_by_active_runs
from services.orchestrator.scheduler import Ticker
from services.orchestrator.sites import router as sites_router
from services.orchestrator.sites.router import KeywordsIn
from services.orchestrator.sites.service import SiteService
from services.orchestrator.web import openapi, problems
from services.orchestrator.web.auth import Authenticator
from services.orchestrator.web.limits import BodyLimit
from services.orchestrator.web.routing import KIND_KEY, RouteKind, api_routes
from services.rules.service import RuleService
from services.webhooks.service import WebhookService
from shared.kafka import CONSUMER_TUNING
from shared.runtime import Runtime
from shared.topics import KEYWORDS_INGEST, STAGE_RESULTS

GROUP = "contentline-orchestrator"
MAX_BODY_BYTES = 25 * 1024 * 1024  # the CSV upload's 20 MB plus multipart overhead
log = logging.getLogger(__name__)


def subscribe(rt: Runtime, runs: RunService) -> None:
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


def create_app() -> FastAPI:
    rt = Runtime.create("orchestrator")
    operator_key = keys.operator_key(rt.settings)
    if operator_key is None:
        log.warning("no operator key configured (CONTENTLINE_OPERATOR_KEY[_FILE]): operator routes refuse everyone")
    costs = CostTable.model_validate_json(rt.settings.cost_table_json) if rt.settings.cost_table_json else DEFAULT_COSTS
    accounts = AccountService(rt.sessions, reservations=held_by_active_runs)
    sites = SiteService(rt.sessions, rt.outbox)
    runs = RunService(rt.sessions, Engine(rt.outbox, rt.settings, costs))
    review = ReviewService(rt.sessions, rt.outbox)
    ops = OpsService(rt.sessions)
    content = ContentService(rt.sessions, rt.settings.media_dir)
    curation = DraftCuration(rt.sessions, runs)
    # Issue 15: "execute now" decides a rule here, through this process's run engine and outbox.
    rules = RuleService(rt.sessions, runs, rt.outbox, rt.settings.rules_busy_retry_seconds)
    webhooks = WebhookService(rt.sessions, rt.settings)  # the webhooks process's dispatcher polls for new rows
    subscribe(rt, runs)
    ticker = Ticker(runs, accounts, rt.settings.tick_seconds)
    hub = RunEventHub(rt.settings.kafka_bootstrap)  # the dashboard's push streams

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rt.on_startup()
        await rt.broker.start()
        await rt.after_startup()
        ticker.start()
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await ticker.stop()
            await rt.broker.stop()
            await rt.on_shutdown()

    # Swagger UI and ReDoc from the installed fastapi-offline package: /docs and /redoc work without internet.
    app = FastAPIOffline(
        title="contentline orchestrator",
        version="1",
        lifespan=lifespan,
        description="Every /api/v1 route needs `Authorization: Bearer <key>`: an account key, or the operator "
        "key for operator routes (see each operation's `x-route-kind`). Errors are RFC 9457 problem details.",
    )
    authenticator = Authenticator(operator_key, accounts.authenticate)
    app.state.authenticator = authenticator
    for docs_route in api_routes(app.routes):  # /docs, /redoc and the OAuth2 redirect page: public
        docs_route.openapi_extra = {KIND_KEY: RouteKind.PUBLIC.value}
    for router in (
        *accounts_router.build(accounts),
        *sites_router.build(sites),
        *runs_router.build(runs),
        *review_router.build(review),
        *ops_router.build(ops),
        *content_router.build(content, review, curation),
        *rules_router.build(rules),
        *webhooks_router.build(webhooks),
    ):
        app.include_router(router)

    token = rt.settings.instance_token

    @app.get("/health", openapi_extra={KIND_KEY: RouteKind.PUBLIC.value}, tags=["health"])
    async def health() -> dict[str, str | None]:
        # The per-start token proves to the launcher that it reached this process, not whatever holds the port.
        return {"status": "ok", "instance": token}

    # The dashboard (same origin, same keys: sign in with one); its pages are not API operations.
    @app.get("/", openapi_extra={KIND_KEY: RouteKind.PUBLIC.value}, include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)

    dashboard = Dashboard(
        accounts=accounts, sites=sites, runs=runs, review=review, content=content, curation=curation,
        sessions=Sessions(rt.sessions, authenticator), hub=hub, templates=Templates(),
    )
    app.mount("/dashboard", dashboard_app.build(dashboard))

    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    openapi.install(app, [problems.Problem, KeywordsIn])
    return app
