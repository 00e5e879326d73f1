"""Topic and consumer inspection against the real broker: counts, exact lag, the decoding tail, and
Kafka's own CLI tools from the local stack agreeing with our figures."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack import kafka_tools
from devstack.stack import Stack
from shared.inspection import GroupLag, TailLine, consumer_lag, list_topics, tail_topic
from shared.topics import ALL_TOPICS, CLUSTER_COMMANDS, RUN_EVENTS
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    start_run,
    wait_run,
)

# Per partition: records produced, and how far the group commits (0: commits offset 0, nothing read).
PRODUCED = {0: 7, 1: 4, 2: 9}
COMMITTED = {0: 5, 1: 0, 2: 9}


async def new_topic(bootstrap: str, partitions: int = 3, suffix: str = "") -> str:
    """A topic of this test alone (not `contentline.`-prefixed, so it stays out of the default listing)."""
    name = f"inspect-test-{uuid.uuid4().hex[:10]}{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(100):  # a new topic has no leader for a moment
            if len(await producer.partitions_for(name) or ()) == partitions:
                break
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
    return name


async def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, n in counts.items():
            for i in range(n):
                await producer.send(topic, f"record {i}".encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def group_that_committed(bootstrap: str, topic: str, committed: dict[int, int]) -> tuple[str, str, GroupLag]:
    """A consumer group that read `topic`, committed `committed`, and was stopped; returns (group, its
    client id, the lag seen while it was still running)."""
    group, client = f"inspect-group-{uuid.uuid4().hex[:8]}", f"inspect-client-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        for _ in range(200):
            if len(consumer.assignment()) == len(committed):
                break
            await consumer.getmany(timeout_ms=100)
        assert len(consumer.assignment()) == len(committed), consumer.assignment()
        await consumer.commit({TopicPartition(topic, p): offset for p, offset in committed.items()})
        (running,) = await consumer_lag(bootstrap, groups=[group])
    finally:
        await consumer.stop()  # leaves the group: no members from here on
    return group, client, running


async def test_topics_count_what_was_produced(stack: Stack) -> None:
    topic = await new_topic(stack.kafka_bootstrap)
    await produce(stack.kafka_bootstrap, topic, PRODUCED)

    (summary,) = await list_topics(stack.kafka_bootstrap, [topic])
    assert summary.exists and summary.error is None
    assert {p.partition: p.messages for p in summary.partitions} == PRODUCED
    assert {p.partition: (p.beginning, p.end) for p in summary.partitions} == {p: (0, n) for p, n in PRODUCED.items()}
    assert summary.messages == sum(PRODUCED.values())
    assert all(p.leader is not None for p in summary.partitions)

    # The default listing: every topic of shared/topics.py, in that order, with its 6 partitions.
    listed = await list_topics(stack.kafka_bootstrap)
    assert [t.name for t in listed[: len(ALL_TOPICS)]] == list(ALL_TOPICS)
    assert all(t.exists and len(t.partitions) == 6 for t in listed[: len(ALL_TOPICS)])
    assert topic not in {t.name for t in listed}

    (missing,) = await list_topics(stack.kafka_bootstrap, ["inspect-test-no-such-topic"])
    assert not missing.exists and missing.error == "topic does not exist" and missing.partitions == []


async def test_lag_of_a_stopped_group_is_exact_per_partition(stack: Stack) -> None:
    topic = await new_topic(stack.kafka_bootstrap)
    await produce(stack.kafka_bootstrap, topic, PRODUCED)
    group, client, running = await group_that_committed(stack.kafka_bootstrap, topic, COMMITTED)

    # While it ran: one member held every partition, and the lag was already exact.
    assert running.state == "Stable" and len(running.members) == 1
    (member,) = running.members
    assert member.client_id == client and sorted(member.partitions) == [f"{topic}/{p}" for p in sorted(PRODUCED)]
    assert all(row.member_id == member.member_id and row.client_id == client for row in running.partitions)

    (stopped,) = await consumer_lag(stack.kafka_bootstrap, groups=[group])
    assert stopped.exists and stopped.state == "Empty" and stopped.members == []
    rows = {row.partition: row for row in stopped.partitions}
    assert set(rows) == set(PRODUCED) and all(row.topic == topic for row in rows.values())
    for partition, produced in PRODUCED.items():
        row = rows[partition]
        assert (row.committed, row.end, row.lag) == (COMMITTED[partition], produced, produced - COMMITTED[partition])
        assert row.member_id is None and row.client_id is None and row.host is None
    assert stopped.total_lag == sum(PRODUCED.values()) - sum(COMMITTED.values())
    assert running.partitions == [
        r.model_copy(update={"member_id": member.member_id, "client_id": client, "host": member.host})
        for r in stopped.partitions
    ]

    # The group is in the full listing too, and a topic filter that excludes its topic leaves it empty.
    assert group in {g.group for g in await consumer_lag(stack.kafka_bootstrap)}
    (filtered,) = await consumer_lag(stack.kafka_bootstrap, groups=[group], topics=[RUN_EVENTS])
    assert filtered.partitions == [] and filtered.total_lag == 0

    (unknown,) = await consumer_lag(stack.kafka_bootstrap, groups=["inspect-no-such-group"])
    assert not unknown.exists and unknown.state == "Dead" and unknown.partitions == []


async def test_tail_decodes_stage_commands_and_run_events(stack: Stack, api: httpx.Client) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 3))
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    run_id = start_run(api, site)["run_id"]
    assert wait_run(api, run_id)["status"] == "completed"

    async def lines(topic: str) -> list[TailLine]:
        # Other tests share these topics: the last records of each partition are ample for this run's few.
        async with contextlib.aclosing(tail_topic(stack.kafka_bootstrap, topic, last=200, follow=False)) as tail:
            return [line async for line in tail if run_id in line.summary]

    commands = await lines(CLUSTER_COMMANDS)
    assert commands and all(line.contract == "StageCommand" for line in commands)
    assert all(f"site={site}" in line.summary and "stage=1 (keywords → clusters)" in line.summary for line in commands)
    assert all(line.key is not None and line.data["run_id"] == run_id for line in commands)

    async def all_events() -> list[TailLine] | None:  # the outbox relays the last event a moment later
        found = await lines(RUN_EVENTS)
        return found if found and "status=completed" in found[-1].summary else None

    events = await eventually(all_events, timeout=30)
    assert {line.contract for line in events} == {"RunEvent"}
    assert events[0].summary.startswith(f"run {run_id} ") and "status=completed" in events[-1].summary
    assert f"{RUN_EVENTS}[{events[0].ref.partition}]@{events[0].ref.offset}" in events[0].render()


async def test_tail_follows_new_records_and_falls_back_to_raw(stack: Stack) -> None:
    topic = await new_topic(stack.kafka_bootstrap, partitions=1)
    await produce(stack.kafka_bootstrap, topic, {0: 3})

    async def follow() -> list[TailLine]:
        async with contextlib.aclosing(tail_topic(stack.kafka_bootstrap, topic, last=1, limit=2)) as tail:
            return [line async for line in tail]

    task = asyncio.create_task(follow())
    await asyncio.sleep(1.5)  # it is waiting at the end now
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\x00\xff not json", key=b"k1")
    finally:
        await producer.stop()
    old, new = await asyncio.wait_for(task, timeout=30)
    assert (old.ref.offset, old.summary, old.contract) == (2, "raw: record 2", None)
    assert (new.ref.offset, new.key, new.contract) == (3, "k1", None)
    assert new.summary == "raw: b'\\x00\\xff not json'"


def tools_dir(stack: Stack, tmp_path: Path) -> Path:
    """The wrappers the local launcher wrote next to the broker; written here for another kind of stack."""
    if stack.infra_source == "local":
        return stack.state_dir / "kafka" / "bin"
    kafka_tools.write_tool_wrappers(tmp_path / "bin", stack.kafka_bootstrap)
    return tmp_path / "bin"


def run_tool(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(bin_dir / args[0]), *args[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


async def test_kafkas_own_tools_run_against_the_stack_and_agree_with_lag(stack: Stack, tmp_path: Path) -> None:
    bin_dir = tools_dir(stack, tmp_path)
    assert set(kafka_tools.KAFKA_TOOLS) <= {p.name for p in bin_dir.iterdir()}
    topic = await new_topic(stack.kafka_bootstrap)
    await produce(stack.kafka_bootstrap, topic, PRODUCED)
    group, _, _ = await group_that_committed(stack.kafka_bootstrap, topic, COMMITTED)

    listed = run_tool(bin_dir, "kafka-topics", "--list").stdout.split()
    assert set(ALL_TOPICS) | {topic} <= set(listed)

    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    described = run_tool(bin_dir, "kafka-consumer-groups", "--describe", "--group", group)
    rows = [line.split() for line in described.stdout.splitlines() if line.startswith(group)]
    theirs = {int(r[2]): (int(r[3]), int(r[4]), int(r[5]), r[6]) for r in rows if r[1] == topic}
    (ours,) = await consumer_lag(stack.kafka_bootstrap, groups=[group])
    assert theirs == {row.partition: (row.committed, row.end, row.lag, "-") for row in ours.partitions}
    assert f"Consumer group '{group}' has no active members." in described.stderr

    offsets = run_tool(bin_dir, "kafka-get-offsets", "--topic", topic).stdout.split()
    assert sorted(offsets) == sorted(f"{topic}:{p}:{n}" for p, n in PRODUCED.items())
