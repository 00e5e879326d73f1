"""`/metrics` of every service against the real stack: each parses with the Prometheus client's own parser, and
the counters move when a run runs (issue 15, "Metrics").

Counters are process-wide and the stack is shared by the session, so every check is a difference between a
scrape before and one after this test's run, never an absolute value.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import SERVICES, Stack
from shared.contracts import PublishCommand
from shared.db.models import Draft
from shared.topics import (
    CLUSTER_COMMANDS,
    IDEATE_COMMANDS,
    IMAGE_COMMANDS,
    PUBLISH_COMMANDS,
    RUN_EVENTS,
    STAGE_RESULTS,
    WRITE_COMMANDS,
)
from tests.helpers import create_site, eventually, import_keywords, keyword_set, start_run, wait_run
from tests.integration.wordpress_support import send

Labels = frozenset[tuple[str, str]]
Scrape = dict[tuple[str, Labels], float]
WORKER_TOPICS = {
    "clusterer": CLUSTER_COMMANDS,
    "ideator": IDEATE_COMMANDS,
    "writer": WRITE_COMMANDS,
    "imager": IMAGE_COMMANDS,
}
# The model function each worker calls (at least): the clusterer embeds, the imager draws.
WORKER_AI_KIND = {"clusterer": "embeddings", "ideator": "chat", "writer": "chat", "imager": "image"}


def scrape(stack: Stack, service: str) -> Scrape:
    """Every sample of the service's /metrics, parsed by prometheus_client (a malformed page raises)."""
    r = httpx.get(stack.metrics_url(service), timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def total(page: Scrape, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in page.items() if n == name and want <= ls)


def names(page: Scrape) -> set[str]:
    return {n for n, _ in page}


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def test_every_service_serves_metrics_in_the_text_format(stack: Stack) -> None:
    ours = {"contentline_outbox_unpublished", "contentline_outbox_parked", "contentline_consumer_lag"}
    for service in SERVICES:
        text = httpx.get(stack.metrics_url(service), timeout=30).text
        families = {f.name: f.type for f in text_string_to_metric_families(text)}
        # the runtime's own, FastStream's Kafka middleware (a labelled family is declared before its first sample)
        assert families.get("process_cpu_seconds") == "counter", service
        assert families.get("faststream_received_messages") == "counter", (service, sorted(families))
        assert families.get("faststream_received_processed_messages_duration_seconds") == "histogram", service
        assert ours <= set(families), (service, sorted(families))
        page = scrape(stack, service)
        for producer in (service, f"{service}.events"):  # its own and its lane's (shared.delivery.LANES)
            backlog = [ls for n, ls in page if n == "contentline_outbox_unpublished"]
            assert any(("producer", producer) in ls for ls in backlog), producer
    orchestrator = {f.name for f in text_string_to_metric_families(httpx.get(stack.metrics_url("orchestrator")).text)}
    assert {"http_requests", "contentline_credits_debited"} <= orchestrator
    for worker in ("clusterer", "ideator", "writer", "imager"):
        text = httpx.get(stack.metrics_url(worker), timeout=30).text
        assert {"contentline_ai_calls", "contentline_command_seconds"} <= {
            f.name for f in text_string_to_metric_families(text)
        }, worker


async def test_counters_move_when_a_run_runs(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    before = {s: scrape(stack, s) for s in SERVICES}

    site = create_site(api, "metrics")
    import_keywords(api, site, keyword_set(2, 3))
    run = start_run(api, site)
    view = wait_run(api, run["run_id"], timeout=240)
    assert view["status"] == "completed", view
    async with db() as s:
        draft = await s.scalar(select(Draft).where(Draft.site_id == site).limit(1))
    assert draft is not None
    # The publisher is not part of a run yet: give it one command (the site has no WordPress connection, so it
    # answers with a failed result, which is work all the same).
    await send(stack, PublishCommand(message_id=f"pub-{uuid.uuid4().hex}", account_id=view["account_id"],
                                     site_id=site, draft_id=draft.id, run_id=run["run_id"]))  # fmt: skip

    async def scraped_once(service: str, ready: Callable[[Scrape], bool]) -> Scrape:
        async def attempt() -> Scrape | None:
            page = await asyncio.to_thread(scrape, stack, service)
            return page if ready(page) else None

        found: Scrape = await eventually(attempt, timeout=60, interval=0.5)
        return found

    received = "faststream_received_messages_total"
    after = {
        # the orchestrator took every stage result; its debits were counted once committed
        "orchestrator": await scraped_once(
            "orchestrator", lambda p: moved(before["orchestrator"], p, received, handler=STAGE_RESULTS) > 0
        ),
        "webhooks": await scraped_once(
            "webhooks", lambda p: moved(before["webhooks"], p, received, handler=RUN_EVENTS) > 0
        ),
        "publisher": await scraped_once(
            "publisher", lambda p: moved(before["publisher"], p, received, handler=PUBLISH_COMMANDS) >= 1
        ),
    }
    for worker in WORKER_TOPICS:
        after[worker] = scrape(stack, worker)

    orch_before, orch = before["orchestrator"], after["orchestrator"]
    stages = {s["stage"]: s for s in view["stages"]}
    assert moved(orch_before, orch, received, handler=STAGE_RESULTS) >= sum(
        s["batches_total"] for n, s in stages.items() if n <= 6
    )
    debited = moved(orch_before, orch, "contentline_credits_debited_total")
    assert Decimal(view["total_credits_used"]) > 0
    assert debited == pytest.approx(float(view["total_credits_used"]), abs=1e-6)
    assert moved(orch_before, orch, "contentline_credits_debited_total", stage="4") > 0  # labelled by stage
    # the HTTP instrumentator: by route template, method and exact status
    assert moved(orch_before, orch, "http_requests_total", handler="/api/v1/sites/{site_id}/runs",
                 method="POST", status="201") == 1  # fmt: skip
    assert moved(orch_before, orch, "http_request_duration_seconds_count") > 0

    for worker, topic in WORKER_TOPICS.items():
        w_before, w_after = before[worker], after[worker]
        assert moved(w_before, w_after, received, handler=topic) > 0, worker
        # our command timing (FastStream's own sees only the hand-off to the worker's pool)
        assert moved(w_before, w_after, "contentline_command_seconds_count", topic=topic, outcome="ok") > 0, worker
        kind = WORKER_AI_KIND[worker]
        assert moved(w_before, w_after, "contentline_ai_calls_total", kind=kind, outcome="ok") > 0, worker
        assert moved(w_before, w_after, "contentline_ai_call_seconds_count", kind=kind, outcome="ok") > 0, worker
        # every stage result a worker sent went out through its outbox and the relay
        assert moved(w_before, w_after, "faststream_published_messages_total", destination=STAGE_RESULTS) > 0, worker
    # prompt and completion tokens of the writer's chat calls
    assert moved(before["writer"], after["writer"], "contentline_ai_tokens_total", direction="completion") > 0
    # the publisher answered its command through its outbox
    assert moved(before["publisher"], after["publisher"], "faststream_received_processed_messages_total",
                 handler=PUBLISH_COMMANDS) >= 1  # fmt: skip

    # the scrape-time gauges (read at most every metrics_cache_seconds): each consuming service reports its
    # group's lag per partition and its outbox backlog
    for service, topic in {**WORKER_TOPICS, "orchestrator": STAGE_RESULTS, "webhooks": RUN_EVENTS}.items():
        page = await scraped_once(service, lambda p, t=topic: bool(lags_of(p, t)))  # type: ignore[misc]
        assert all(("group", f"contentline-{service}") in ls and v >= 0 for ls, v in lags_of(page, topic)), service
        assert total(page, "contentline_outbox_oldest_unpublished_seconds", producer=service) >= 0
        assert total(page, "contentline_metrics_refresh_failures_total") == 0, service


def lags_of(page: Scrape, topic: str) -> list[tuple[Labels, float]]:
    return [(ls, v) for (n, ls), v in page.items() if n == "contentline_consumer_lag" and ("topic", topic) in ls]
