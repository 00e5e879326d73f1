"""Orchestrator process: REST API + Kafka consumers + ticker. `python -m services.orchestrator`.

Wiring only: one service per domain (accounts, sites, runs, review, exports, publishing, ops), their routers, the Kafka
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
from prometheus_fastapi_instrumentator import Instrumentator

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
from services.orchestrator.exports import router as exports_router
from services.orchestrator.exports.service import ExportService
from services.orchestrator.handlers import make_ingest_handler, make_results_handler
from services.orchestrator.ops import router as ops_router
from services.orchestrator.ops.inspection import Inspector
from services.orchestrator.ops.service import OpsService
from services.orchestrator.publishing import router as publishing_router
from services.orchestrator.publishing.connections import ConnectionService
from services.orchestrator.publishing.handlers import make_publication_status_handler, make_publish_result_handler
from services.orchestrator.publishing.scheduling import Policy
from services.orchestrator.publishing.service import PublishingService
from services.orchestrator.publishing.ticker import PublishingTicker
from services.orchestrator.review import router as review_router
from services.orchestrator.review.curation import DraftCuration
from services.orchestrator.review.service import ReviewService
from services.orchestrator.runs import router as runs_router
from services.orchestrator.runs.census import WorkerCensus
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.service import RunService, held_by_active_runs
from services.orchestrator.scheduler import Ticker
from services.orchestrator.sites import parking_router
from services.orchestrator.sites import router as sites_router
from services.orchestrator.sites.parking import ParkingService
from services.orchestrator.sites.router import KeywordsIn
from services.orchestrator.sites.service import SiteService
from services.orchestrator.web import openapi, problems
from services.orchestrator.web.auth import Authenticator
from services.orchestrator.web.limits import BodyLimit
from services.orchestrator.web.routing import KIND_KEY, RouteKind, api_routes
from services.rules.service import RuleService
from services.webhooks.service import WebhookService
from shared.kafka import CONSUMER_TUNING, RELAXED_CONSUMER_TUNING
from shared.runtime import Runtime
from shared.topics import KEYWORDS_INGEST, PUBLICATION_STATUS, PUBLISH_RESULTS, STAGE_RESULTS

GROUP = "contentline-orchestrator"
MAX_BODY_BYTES = 25 * 1024 * 1024  # the CSV upload's 20 MB plus multipart overhead
log = logging.getLogger(__name__)


# Stage results are taken in groups (services/orchestrator/grouping.py): up to this many records at once,
# whatever the consumer has buffered (handed over as soon as there is one). When nothing is, FastStream waits
# this long for a record and then sleeps as long before it asks again: a record that arrives during that
# sleep waits at most this long. Both are local (the broker is fetched from in the background, with the
# 25 ms fetch wait), so an idle orchestrator wakes ~50 times a second and sends nothing for it.
RESULTS_GROUP_MAX = 200
RESULTS_GROUP_WAIT_MS = 10


def subscribe(rt: Runtime, runs: RunService, publishing: PublishingService) -> None:
    common = {
        "group_id": GROUP,
        "ack_policy": AckPolicy.NACK_ON_ERROR,  # commit after the handler; infra errors redeliver after back-off
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": 10 * 60 * 1000,
        **CONSUMER_TUNING,  # fetch wait in tens of ms (shared.kafka)
    }
    rt.broker.subscriber(
        STAGE_RESULTS,
        batch=True,
        max_records=RESULTS_GROUP_MAX,
        batch_timeout_ms=RESULTS_GROUP_WAIT_MS,
        title=f"orchestrator:{STAGE_RESULTS}",
        **common,
    )(make_results_handler(rt, runs))
    relaxed = common | RELAXED_CONSUMER_TUNING  # off a run's critical path (shared.kafka)
    rt.broker.subscriber(KEYWORDS_INGEST, title=f"orchestrator:{KEYWORDS_INGEST}", **relaxed)(
        make_ingest_handler(rt, runs)
    )
    for topic, handler in (
        (PUBLISH_RESULTS, make_publish_result_handler(rt, publishing)),
        (PUBLICATION_STATUS, make_publication_status_handler(rt, publishing)),
    ):
        rt.broker.subscriber(topic, title=f"orchestrator:{topic}", **relaxed)(handler)


def create_app() -> FastAPI:
    rt = Runtime.create("orchestrator")
    operator_key = keys.operator_key(rt.settings)
    if operator_key is None:
        log.warning("no operator key configured (CONTENTLINE_OPERATOR_KEY[_FILE]): operator routes refuse everyone")
    costs = CostTable.model_validate_json(rt.settings.cost_table_json) if rt.settings.cost_table_json else DEFAULT_COSTS
    accounts = AccountService(rt.sessions, reservations=held_by_active_runs)
    sites = SiteService(rt.sessions, rt.outbox)
    census = WorkerCensus(rt.settings.kafka_bootstrap, rt.settings.worker_census_seconds)  # scales the window
    runs = RunService(rt.sessions, Engine(rt.outbox, rt.settings, costs, census))
    review = ReviewService(rt.sessions, rt.outbox, Policy.of(rt.settings))
    ops = OpsService(rt.sessions)
    publishing = PublishingService(rt.sessions, rt.outbox, Policy.of(rt.settings))
    connections = ConnectionService(rt.sessions, rt.settings)
    content = ContentService(rt.sessions, rt.settings.media_dir)
    curation = DraftCuration(rt.sessions, runs)
    # Issue 15: "execute now" decides a rule here, through this process's run engine and outbox.
    rules = RuleService(rt.sessions, runs, rt.outbox, rt.settings.rules_busy_retry_seconds)
    webhooks = WebhookService(rt.sessions, rt.settings)  # the webhooks process's dispatcher polls for new rows
    subscribe(rt, runs, publishing)
    ticker = Ticker(runs, accounts, rt.settings.tick_seconds)
    publishing_ticker = PublishingTicker(publishing, rt.settings.tick_seconds)
    hub = RunEventHub(rt.settings.kafka_bootstrap)  # the dashboard's push streams

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rt.on_startup()
        await rt.broker.start()
        await rt.after_startup()
        census.start()
        ticker.start()
        publishing_ticker.start()
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await publishing_ticker.stop()
            await ticker.stop()
            await census.stop()
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
        *parking_router.build(ParkingService(rt.sessions, rt.settings.park_after_failed_runs)),
        *runs_router.build(runs),
        *review_router.build(review),
        *exports_router.build(ExportService(review, rt.settings.media_dir)),
        *ops_router.build(ops, Inspector(rt.settings.kafka_bootstrap)),
        *publishing_router.build(publishing, connections),
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
    # HTTP request metrics (http_*, by route template, method and exact status), served on the metrics port
    # with the rest (shared.metrics.endpoint), not on this API. Added last: outermost, so it sees every answer.
    Instrumentator(should_group_status_codes=False).instrument(app)
    openapi.install(app, [problems.Problem, KeywordsIn])
    return app
