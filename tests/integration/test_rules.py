"""Automation rules (issue 15) against the real broker, database and services: entity events from a real
clustering run, redelivered events, the daily limit, the credit limit, and a cron rule with two schedulers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from services.orchestrator.costs import DEFAULT_COSTS
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.service import RunService
from services.rules.schemas import RuleSpec
from services.rules.service import RuleService
from shared.db.models import Cluster, Idea, Run, ScheduledTask
from shared.delivery import Outbox
from shared.entity_events import ClusterCreated, EntityEvent, KeywordAdded, entity_event
from shared.settings import Settings
from shared.topics import DLQ_REASON_HEADER, ENTITY_EVENTS, RULES_DLQ
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    eventually,
    import_keywords,
    publish,
    read_topic,
    start_run,
    wait_run,
)

FAST = {"CONTENTLINE_RULES_TICK_SECONDS": "0.3", "CONTENTLINE_RULES_BUSY_RETRY_SECONDS": "0.5"}
ALL_STAGES = {str(s): True for s in range(1, 7)}


@pytest.fixture(scope="module", autouse=True)
def fast_rules(stack: Stack) -> Iterator[None]:
    stack.stop_service("rules")
    stack.extra_env.update(FAST)
    stack.start_service("rules")
    try:
        yield
    finally:
        stack.stop_service("rules")
        for key in FAST:
            stack.extra_env.pop(key, None)
        stack.start_service("rules")


def rule_service(stack: Stack, db: async_sessionmaker[AsyncSession]) -> RuleService:
    """The service interface on the test's database. Its outbox is the rules producer's, so what it adds is
    relayed by the running rules process."""
    settings = Settings(database_url=stack.database_url)
    outbox = Outbox("rules")
    return RuleService(db, RunService(db, Engine(outbox, settings, DEFAULT_COSTS)), outbox, busy_retry_seconds=0.5)


def create_rule(api: httpx.Client, site: str, **spec: Any) -> dict[str, Any]:
    r = api.post(f"/sites/{site}/rules", json=spec)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def tasks_of(db: async_sessionmaker[AsyncSession], rule_id: str) -> list[ScheduledTask]:
    async with db() as s:
        rows = await s.scalars(select(ScheduledTask).where(ScheduledTask.rule_id == rule_id).order_by(ScheduledTask.id))
        return list(rows.all())


def uneven_keywords() -> list[dict[str, Any]]:
    """Four topics of 2, 3, 6 and 8 keywords: clusters of different sizes for a size condition."""
    from tests.helpers import TOPICS

    out = []
    for (head, mods), n in zip(TOPICS[:4], (2, 3, 6, 8), strict=True):
        out += [{"keyword": f"{head} {m}", "volume": 100} for m in mods[:n]]
    return out


async def test_cluster_rule_fires_generate_ideas_once_for_exactly_the_matching_clusters(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, uneven_keywords())
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    assert wait_run(api, start_run(api, site)["run_id"])["status"] == "completed"

    # The entity events of the import and the clustering run, from the topic itself.
    def of_site(record: Any) -> bool:
        return bool(record.key == site.encode())

    records = await read_topic(stack.kafka_bootstrap, ENTITY_EVENTS, of_site)
    events = [EntityEvent.model_validate_json(r.value) for r in records]
    assert sum(e.data.type == "keyword_added" for e in events) == 19
    created = [e for e in events if e.data.type == "cluster_created"]
    async with db() as s:
        clusters = {c.id: c.size for c in (await s.scalars(select(Cluster).where(Cluster.site_id == site))).all()}
    assert {e.data.id: e.data.fields()["size"] for e in created} == clusters  # one event per cluster, its size
    sizes = sorted(set(clusters.values()))
    assert len(sizes) > 1, f"the clusterer made clusters of one size only: {clusters}"
    threshold = sizes[len(sizes) // 2]
    matching = {cid for cid, size in clusters.items() if size >= threshold}

    # The rule comes after the run; the events are then delivered (again) twice each, as raw records.
    configure(api, site, stage_enabled=ALL_STAGES)
    rule = create_rule(
        api,
        site,
        name="ideas for big clusters",
        trigger="cluster_created",
        conditions=[{"field": "size", "operator": "gte", "value": threshold}],
        actions=[{"type": "generate_ideas"}],
        credit_limit_per_execution="1000",
    )
    for _ in range(2):
        for r in records:
            if json.loads(r.value)["data"]["type"] == "cluster_created":
                await publish(stack.kafka_bootstrap, ENTITY_EVENTS, r.value, key=r.key)

    async def all_settled() -> list[ScheduledTask] | None:
        found = await tasks_of(db, rule["id"])
        done = len(found) == len(clusters) and all(t.status in ("completed", "skipped", "failed") for t in found)
        return found if done else None

    tasks = await eventually(all_settled, timeout=180, interval=0.5)
    assert len({t.event_key for t in tasks}) == len(clusters)  # one task per event, however often it came
    fired = {t.payload["id"]: t for t in tasks if t.status == "completed"}
    assert set(fired) == matching, [(t.payload, t.status, t.error_message) for t in tasks]
    skipped = [t for t in tasks if t.status == "skipped"]
    assert {t.payload["id"] for t in skipped} == set(clusters) - matching
    assert {t.error_message for t in skipped} <= {"Conditions not met"}
    async with db() as s:
        runs = {t.run_id: await s.get(Run, t.run_id) for t in fired.values()}
        ideas = set((await s.scalars(select(Idea.cluster_id).where(Idea.site_id == site))).all())
    assert len(runs) == len(matching)  # a run per matching cluster (the site being busy queued the others)
    for cid, task in fired.items():
        run = runs[task.run_id]
        assert run is not None and run.trigger == "rule" and run.status == "completed"
        assert run.options["target"]["item_ids"] == [cid] and run.options["target"]["stages"] == [2]
        assert Decimal(run.options["limits"]["max_credits_per_run"]) == Decimal("1000")
        assert task.credits_used == run.total_credits_used
    assert ideas == matching
    assert api.get(f"/rules/{rule['id']}").json()["executions_today"] == len(matching)


async def test_daily_limit_and_credit_limit_record_the_seeds_reasons(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    limited = create_rule(
        api,
        site,
        name="notify on keywords",
        trigger="keyword_added",
        conditions=[{"field": "volume", "operator": "gt", "value": 10}],
        actions=[{"type": "notify", "message": "new keyword"}],
        max_executions_per_day=2,
    )
    account = api.get(f"/sites/{site}").json()["account_id"]
    sent = [entity_event(account, site, None, KeywordAdded(id=i, keyword=f"k{i}", volume=100)) for i in range(1, 5)]
    for event in sent:
        await publish(stack.kafka_bootstrap, ENTITY_EVENTS, event.model_dump_json().encode(), key=site.encode())

    async def four() -> list[ScheduledTask] | None:
        found = await tasks_of(db, limited["id"])
        return found if len(found) == 4 and all(t.status != "pending" for t in found) else None

    tasks = await eventually(four, timeout=60)
    assert [t.status for t in tasks] == ["completed", "completed", "skipped", "skipped"]
    assert [t.error_message for t in tasks[2:]] == ["Execution limit reached"] * 2
    history = api.get(f"/sites/{site}/scheduled-tasks", params={"rule_id": limited["id"], "status": "skipped"}).json()
    assert history["total"] == 2 and {t["error_message"] for t in history["items"]} == {"Execution limit reached"}

    # A generate_ideas rule whose credit limit is below the estimate of the cluster it would ideate.
    async with db.begin() as s:
        cluster = Cluster(site_id=site, name="tiny", name_norm="tiny", intent="informational", centroid=b"", size=3)
        s.add(cluster)
        await s.flush()
        cluster_id = cluster.id
    stingy = create_rule(
        api,
        site,
        name="stingy",
        trigger="schedule",
        schedule={"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
        actions=[{"type": "generate_ideas", "cluster_ids": [cluster_id]}],
        credit_limit_per_execution="0.0001",
    )
    task = api.post(f"/rules/{stingy['id']}/execute")
    assert task.status_code == 202, task.text
    body = task.json()
    assert body["status"] == "skipped" and body["error_message"] == "Insufficient credits", body
    assert "exceeds the rule's limit 0.0001" in body["result"]["detail"]
    async with db() as s:  # nothing was started
        assert (await s.scalars(select(Run).where(Run.site_id == site))).all() == []

    # An inactive rule says so first.
    assert api.patch(f"/rules/{stingy['id']}", json={"is_active": False}).status_code == 200
    assert api.post(f"/rules/{stingy['id']}/execute").json()["error_message"] == "Rule is inactive"


async def test_a_schedule_rule_fires_once_at_its_cron_time_with_two_schedulers(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    account = api.get(f"/sites/{site}").json()["account_id"]
    one, two = rule_service(stack, db), rule_service(stack, db)
    # The clock is injected, a year ahead: the stack's own rules process (real time) must not fire it first.
    created_at = datetime(2027, 12, 1, 8, 0, tzinfo=UTC)  # a Wednesday
    spec = RuleSpec.model_validate(
        {
            "name": "weekday digest",
            "trigger": "schedule",
            "schedule": {"cron": "30 9 * * 1-5", "timezone": "Europe/Berlin"},
            "actions": [{"type": "notify", "message": "good morning"}],
        }
    )
    rule = await one.create_rule(account, site, spec, now=created_at)
    fire_at = datetime(2027, 12, 1, 8, 30, tzinfo=UTC)  # 09:30 in Berlin (CET, UTC+1)
    assert rule.next_fire_at == fire_at

    # Just before: nothing. At the instant, both schedulers tick side by side, each several times. (They fire
    # every due schedule rule in the database; only this rule's tasks are this test's.)
    await one.fire_due_schedules(fire_at - timedelta(seconds=1))
    assert await tasks_of(db, rule.id) == []
    ticks = [s.fire_due_schedules(fire_at + timedelta(seconds=i)) for i in range(3) for s in (one, two)]
    results = await asyncio.gather(*ticks)
    fired = [task_id for r in results for task_id in r]
    tasks = await tasks_of(db, rule.id)
    assert len(tasks) == 1 and tasks[0].id in fired and fired.count(tasks[0].id) == 1
    assert tasks[0].status == "completed" and tasks[0].event_key == f"cron:{fire_at.isoformat()}"
    assert tasks[0].result["actions"] == ["notify"]
    after = await one.get_rule(account, rule.id)
    assert after.next_fire_at == datetime(2027, 12, 2, 8, 30, tzinfo=UTC) and after.executions_today == 1


def test_rule_definitions_are_validated_naming_what_is_wrong(api: httpx.Client) -> None:
    site = create_site(api)
    base = {"name": "r", "trigger": "cluster_created", "actions": [{"type": "generate_ideas"}]}
    cases = [
        ({"conditions": [{"field": "colour", "operator": "eq", "value": 1}]}, "colour"),
        ({"conditions": [{"field": "size", "operator": "between", "value": 1}]}, "conditions.0.operator"),
        ({"actions": [{"type": "launch_rocket"}]}, "actions.0"),
        ({"conditions": [{"field": "size", "operator": "gt", "value": 1, "unit": "kw"}]}, "conditions.0.unit"),
        ({"trigger": "schedule", "schedule": {"cron": "61 * * * *"}}, "cron"),
        ({"trigger": "schedule", "schedule": {"cron": "0 6 * * *", "timezone": "Mars/Olympus"}}, "Mars/Olympus"),
    ]
    for change, named in cases:
        r = api.post(f"/sites/{site}/rules", json=base | change)
        assert r.status_code == 422, r.text
        assert named in r.text, r.text
    rule = create_rule(api, site, **base)
    r = api.patch(f"/rules/{rule['id']}", json={"conditions": [{"field": "colour", "operator": "eq", "value": 1}]})
    assert r.status_code == 422 and "colour" in r.text
    test = api.post(f"/rules/{rule['id']}/test", json={"sample": {"size": 4}}).json()
    assert test["conditions_met"] is True and test["sample_source"] == "given"


async def test_events_no_active_rule_wants_are_settled_by_one_read_per_batch(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """The rules process settles events that no active rule of their site has as trigger (most of them: an
    import sends one per keyword) with one read per batch, without counting an attempt; it must still see every
    rule that wants one, per event."""
    site = create_site(api)
    account = api.get(f"/sites/{site}").json()["account_id"]
    service = rule_service(stack, db)
    event = entity_event(account, site, None, KeywordAdded(id=1, keyword="espresso"))
    cluster = entity_event(account, site, None, ClusterCreated(id=1, name="espresso", intent="commercial", size=2))
    assert await service.concerning_a_rule([event, cluster]) == [False, False]  # no rule at all
    create_rule(api, site, name="on clusters", trigger="cluster_created", actions=[{"type": "generate_ideas"}])
    assert await service.concerning_a_rule([event, cluster]) == [False, True]  # a rule, for the other trigger
    keyword_rule = create_rule(
        api, site, name="on keywords", trigger="keyword_added", actions=[{"type": "notify", "message": "new keyword"}]
    )
    other_site = create_site(api)
    elsewhere = entity_event(account, other_site, None, KeywordAdded(id=2, keyword="x"))
    assert await service.concerning_a_rule([elsewhere, event, cluster, event]) == [False, True, True, True]
    assert api.patch(f"/rules/{keyword_rule['id']}", json={"is_active": False}).status_code == 200
    assert await service.concerning_a_rule([event, cluster]) == [False, True]  # paused rules want nothing
    assert await service.concerning_a_rule([]) == []


async def test_a_batch_of_events_dead_letters_the_unreadable_and_serves_each_wanted_one(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """Events sent back to back on one partition (the rules process fetches them together and handles what it
    fetched as one batch): an unreadable record goes to the dead-letter topic with the reason, every event a
    rule wants gets its task, the others none."""
    site, quiet = create_site(api), create_site(api)
    rule = create_rule(
        api, site, name="every keyword", trigger="keyword_added", actions=[{"type": "notify", "message": "new"}]
    )
    account = api.get(f"/sites/{site}").json()["account_id"]
    marker = f"not an event {uuid.uuid4().hex}".encode()
    wanted = [entity_event(account, site, None, KeywordAdded(id=i, keyword=f"w{i}")) for i in range(1, 4)]
    unwanted = [entity_event(account, quiet, None, KeywordAdded(id=i, keyword=f"u{i}")) for i in range(1, 4)]
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:  # one partition (one key), back to back: the consumer fetches them together
        for value in [wanted[0], unwanted[0], marker, wanted[1], unwanted[1], unwanted[2], wanted[2]]:
            body = value if isinstance(value, bytes) else value.model_dump_json().encode()
            await producer.send(ENTITY_EVENTS, body, key=b"one-key")
        await producer.flush()
    finally:
        await producer.stop()

    async def three() -> list[ScheduledTask] | None:
        found = await tasks_of(db, rule["id"])
        return found if len(found) == 3 else None

    tasks = await eventually(three, timeout=60)
    assert sorted(t.event_key or "" for t in tasks) == sorted(e.message_id for e in wanted)

    async def parked() -> list[Any] | None:
        found = await read_topic(stack.kafka_bootstrap, RULES_DLQ, lambda r: r.value == marker, 0.5)
        return found or None

    [record] = await eventually(parked, timeout=30)
    assert dict(record.headers)[DLQ_REASON_HEADER]  # the reason travels with it
    async with db() as s:
        quiet_tasks = await s.scalar(
            select(func.count()).select_from(ScheduledTask).where(ScheduledTask.site_id == quiet)
        )
    assert quiet_tasks == 0
