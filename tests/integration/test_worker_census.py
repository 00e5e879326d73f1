"""The release window scales with the worker processes of a stage (services/orchestrator/runs/census.py), counted
from the real broker's consumer groups: members holding a partition of the command topic."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Stack
from services.orchestrator.costs import DEFAULT_COSTS
from services.orchestrator.runs.census import WorkerCensus
from services.orchestrator.runs.context import Engine
from shared.contracts import Stage
from shared.delivery import Outbox
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import COMMAND_GROUPS, IDEATE_COMMANDS, WRITE_COMMANDS

PARTITIONS = 4


async def member(stack: Stack, topic: str, group: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    return consumer


async def counted(census: WorkerCensus, topic: str, expected: int) -> None:
    """Refresh until the group has settled on `expected` processes (a rebalance takes a few seconds)."""
    deadline = time.monotonic() + 60
    while (await census.refresh())[topic] != expected:
        assert time.monotonic() < deadline, f"{topic}: still {census.processes(topic)} processes, not {expected}"
        await asyncio.sleep(0.5)


async def test_the_window_grows_with_the_processes_of_the_stage_worker_group(stack: Stack) -> None:
    topic, other = (f"contentline.test.census.{uuid.uuid4().hex[:8]}" for _ in range(2))
    group = f"census-{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, PARTITIONS, [topic, other])
    census = WorkerCensus(stack.kafka_bootstrap, 60, {IDEATE_COMMANDS: group, topic: group})
    # IDEATE_COMMANDS is in this census with the same group, whose members read only `topic`: it counts none.
    first = second = None
    try:
        assert (await census.refresh())[topic] == 0 and census.processes(topic) == 1  # nobody yet: one assumed
        first = await member(stack, topic, group)
        await counted(census, topic, 1)
        second = await member(stack, topic, group)
        await counted(census, topic, 2)
        assert census.processes(topic) == 2
        assert census.processes(IDEATE_COMMANDS) == 1  # the group's members hold none of its partitions
        await second.stop()
        second = None
        await counted(census, topic, 1)
    finally:
        for consumer in (first, second):
            if consumer is not None:
                await consumer.stop()
        await census.stop()

    # The window per stage: per process unless fixed by the setting; stage 1 keeps the clustering window.
    per_process = Settings(ai_max_concurrency=8).release_window
    ideate_group = f"census-{uuid.uuid4().hex[:8]}"
    census = WorkerCensus(stack.kafka_bootstrap, 60, {IDEATE_COMMANDS: ideate_group})
    engine = Engine(Outbox("test"), Settings(ai_max_concurrency=8), DEFAULT_COSTS, census)
    members = [await member(stack, IDEATE_COMMANDS, ideate_group) for _ in range(2)]
    try:
        await counted(census, IDEATE_COMMANDS, 2)
        assert engine.release_window(Stage.IDEATE) == 2 * per_process == 32
        assert engine.release_window(Stage.DRAFTS) == per_process  # not in this census: one process
        assert engine.release_window(Stage.CLUSTER) == Settings(ai_max_concurrency=8).clustering_window
        fixed_settings = Settings(ai_max_concurrency=8, inflight_batches_per_run=10)
        fixed = Engine(Outbox("test"), fixed_settings, DEFAULT_COSTS, census)
        assert fixed.release_window(Stage.IDEATE) == 10
    finally:
        for consumer in members:
            await consumer.stop()
        await census.stop()


def test_the_orchestrator_counts_the_stacks_workers(stack: Stack) -> None:
    """The running orchestrator's census, as its metrics report it: one process of each stage worker."""
    deadline = time.monotonic() + 60
    while True:
        page = httpx.get(stack.metrics_url("orchestrator"), timeout=30).text
        seen = {
            s.labels["topic"]: s.value
            for f in text_string_to_metric_families(page)
            if f.name == "contentline_stage_worker_processes"
            for s in f.samples
        }
        if seen.get(WRITE_COMMANDS) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert seen == dict.fromkeys(COMMAND_GROUPS, 1)
