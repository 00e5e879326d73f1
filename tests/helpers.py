"""Test helpers that talk to the real stack: sites, runs, Kafka topic reads, waiting."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

TOPICS = [
    (
        "best running shoes",
        ["for flat feet", "for women", "for beginners", "under 100", "review", "2026", "for marathon", "cushioned"],
    ),
    ("coffee grinder", ["burr", "manual", "for espresso", "best", "cheap", "review", "electric", "for french press"]),
    ("dog training", ["puppy", "tips", "crate", "leash", "clicker", "for beginners", "at home", "commands"]),
    (
        "mortgage rates",
        ["today", "30 year fixed", "refinance", "first time buyer", "calculator", "forecast", "compare", "best"],
    ),
    (
        "indoor plants",
        ["low light", "easy care", "for beginners", "pet safe", "watering", "best", "air purifying", "large"],
    ),
    ("japan travel", ["itinerary", "budget", "tips", "rail pass", "best time", "tokyo guide", "kyoto", "packing list"]),
    ("beginner yoga", ["poses", "at home", "routine", "for flexibility", "mat", "classes", "morning", "for back pain"]),
    (
        "budget laptop",
        ["for students", "under 500", "best", "gaming", "for programming", "review", "2026", "lightweight"],
    ),
]


# Stage switches for tests that only need keywords clustered.
CLUSTERING_ONLY = {"2": False, "3": False, "4": False, "5": False, "6": False}


def stage(view: dict[str, Any], n: int) -> dict[str, Any]:
    """Stage `n`'s result in a run view from the API."""
    return dict(next(s for s in view["stages"] if s["stage"] == n))


def keyword_set(n_topics: int = 8, per_topic: int = 8) -> list[dict[str, Any]]:
    out = []
    for head, mods in TOPICS[:n_topics]:
        for i, mod in enumerate(mods[:per_topic]):
            out.append({"keyword": f"{head} {mod}", "volume": 1000 - 50 * i})
    return out


@dataclass
class Tenant:
    account_id: str
    key: str
    client: httpx.Client  # base URL /api/v1, Authorization: Bearer <key>


def create_tenant(operator: httpx.Client, api_url: str, credits: str = "0", monthly: str = "0") -> Tenant:
    """A new account made by the operator, with a client that holds the account's first key."""
    account_id = f"acct-{uuid.uuid4().hex[:10]}"
    r = operator.post(
        "/accounts",
        json={
            "id": account_id,
            "name": account_id,
            "plan": "pro",
            "initial_credits": credits,
            "monthly_credits": monthly,
        },
    )
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]["key"]
    client = httpx.Client(base_url=f"{api_url}/api/v1", timeout=60, headers={"Authorization": f"Bearer {key}"})
    return Tenant(account_id, key, client)


def create_site(api: httpx.Client, name: str | None = None) -> str:
    r = api.post("/sites", json={"name": name or f"site-{uuid.uuid4().hex[:6]}", "domain": "example.com"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def import_keywords(api: httpx.Client, site_id: str, keywords: list[dict[str, Any]]) -> dict[str, Any]:
    r = api.post(f"/sites/{site_id}/keywords", json={"keywords": keywords})
    assert r.status_code == 201, r.text
    return dict(r.json())


def configure(api: httpx.Client, site_id: str, **patch: Any) -> dict[str, Any]:
    r = api.patch(f"/sites/{site_id}/config", json=patch)
    assert r.status_code == 200, r.text
    return dict(r.json())


def start_run(api: httpx.Client, site_id: str) -> dict[str, Any]:
    r = api.post(f"/sites/{site_id}/runs")
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait_run(
    api: httpx.Client, run_id: str, until: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 240
) -> dict[str, Any]:
    until = until or (lambda v: v["status"] != "running")
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = api.get(f"/runs/{run_id}").json()
        if until(view):
            return view
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not reach the expected state in {timeout}s: {view}")


async def read_topic(
    bootstrap: str, topic: str, predicate: Callable[[Any], bool] | None = None, idle_seconds: float = 2.0
) -> list[Any]:
    """Every record of `topic` from the beginning (no consumer group, nothing committed)."""
    # The producer's partitions_for() waits for the topic's metadata; the consumer then reads them by hand.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(idle_seconds * 1000))
            for recs in batch.values():
                records.extend(r for r in recs if predicate is None or predicate(r))
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= end[tp] for tp in partitions):
                break
        return records
    finally:
        await consumer.stop()


async def publish(
    bootstrap: str, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Any], timeout: float = 60, interval: float = 0.3) -> Any:
    """Await `check()` until it returns a truthy value (async or sync), or fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s; last value: {last!r}")


def slow_provider(fake: httpx.Client, latency_ms: int) -> None:
    """Every model call takes `latency_ms`: runs last long enough to pause or cancel mid-stage."""
    r = fake.post("/config", json={"latency_ms": latency_ms})
    assert r.status_code == 200, r.text


def app_operations(prefix: str = "/api/v1") -> list[tuple[str, str, str]]:
    """(method, path, route kind) of every operation the orchestrator serves under `prefix`, from its route
    table (the app is built in-process; nothing is started)."""
    from services.orchestrator.app import create_app
    from services.orchestrator.web.routing import api_routes, route_kind

    out = []
    for route in api_routes(create_app().routes):
        if route.path.startswith(prefix):
            out.extend((method, route.path, route_kind(route) or "unclassified") for method in sorted(route.methods))
    return out
