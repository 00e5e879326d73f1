"""The ordered-commit pool against the real broker: several records of one partition at once, offsets
committed only up to the first unfinished one, fetching paused when full, key order, retries, graceful
drain and rebalance (the revoked member finishes, commits, and the next owner repeats nothing)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.stack import Stack
from shared.consume import Record
from shared.kafka import CONSUMER_TUNING, ensure_topics
from shared.parallel import Handler, OrderedCommitPool
from shared.turns import end_turn, wait_for_turn
from tests.helpers import eventually


async def new_topic(bootstrap: str, partitions: int) -> str:
    topic = f"test.pool.{uuid.uuid4().hex[:10]}"
    await ensure_topics(bootstrap, partitions, [topic])
    return topic


async def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    """(partition, key) per record, values numbered in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        while not await producer.partitions_for(topic):
            await asyncio.sleep(0.1)
        for i, (partition, key) in enumerate(records):
            await producer.send_and_wait(topic, str(i).encode(), key=key, partition=partition)
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


@asynccontextmanager
async def consuming(bootstrap: str, topic: str, group: str, pool: OrderedCommitPool) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(bootstrap)

    async def on_record(msg: KafkaMessage) -> None:
        await pool.submit(msg)

    broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        listener=pool.listener,
        rebalance_timeout_ms=30_000,
        **CONSUMER_TUNING,
    )(on_record)
    await broker.start()
    try:
        yield broker
    finally:
        await pool.drain()
        await broker.stop()


class Gates:
    """A handler whose records finish only when the test opens their gate."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self._gates: dict[tuple[int, int], asyncio.Event] = {}

    def gate(self, partition: int, offset: int) -> asyncio.Event:
        return self._gates.setdefault((partition, offset), asyncio.Event())

    def open(self, partition: int, offset: int) -> None:
        self.gate(partition, offset).set()

    def open_all(self) -> None:
        for p, o in self.started:
            self.open(p, o)

    @property
    def handler(self) -> Handler:
        async def handle(record: Record) -> None:
            self.started.append((record.partition, record.offset))
            await self.gate(record.partition, record.offset).wait()

        return handle


def started(gates: Gates, n: int) -> Callable[[], bool]:
    return lambda: len(gates.started) >= n


async def test_one_partition_runs_concurrently_and_commits_in_order(stack: Stack) -> None:
    bootstrap, group = stack.kafka_bootstrap, f"test-pool-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(bootstrap, 1)
    await produce(bootstrap, topic, [(0, b"site-1")] * 6)
    gates = Gates()
    pool = OrderedCommitPool(gates.handler, name="test", max_in_flight=3)
    async with consuming(bootstrap, topic, group, pool):
        await eventually(started(gates, 3), timeout=30)
        await asyncio.sleep(1.0)
        assert gates.started == [(0, 0), (0, 1), (0, 2)]  # full: the partition is paused
        gates.open(0, 1)  # finishes before 0: a slot frees, nothing is committable yet
        await eventually(started(gates, 4), timeout=10)
        await asyncio.sleep(0.5)
        assert await committed(bootstrap, group) == {}
        gates.open(0, 0)  # 0 and 1 done: commit up to 2 (2 and 3 still run)
        await eventually(lambda: committed(bootstrap, group), timeout=10)
        assert await committed(bootstrap, group) == {0: 2}
        for offset in range(2, 6):
            gates.open(0, offset)
        await eventually(started(gates, 6), timeout=10)
        gates.open_all()

        async def all_committed() -> bool:
            return await committed(bootstrap, group) == {0: 6}

        await eventually(all_committed, timeout=10)
    assert sorted(gates.started) == [(0, o) for o in range(6)]  # each once


async def test_drain_commits_finished_work_and_leaves_the_rest_for_redelivery(stack: Stack) -> None:
    bootstrap, group = stack.kafka_bootstrap, f"test-pool-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(bootstrap, 1)
    await produce(bootstrap, topic, [(0, b"k")] * 4)
    first = Gates()
    pool = OrderedCommitPool(first.handler, name="test", max_in_flight=4, drain_seconds=1.0)
    async with consuming(bootstrap, topic, group, pool):
        await eventually(started(first, 4), timeout=30)
        first.open(0, 0)
        first.open(0, 2)  # done, but behind the unfinished 1
        first.open(0, 3)
    # drained: 1 was cancelled after the drain wait, so only offset 0 is committed
    assert await committed(bootstrap, group) == {0: 1}

    second = Gates()
    for offset in (1, 2, 3):
        second.open(0, offset)
    pool = OrderedCommitPool(second.handler, name="test", max_in_flight=4)
    async with consuming(bootstrap, topic, group, pool):
        await eventually(started(second, 3), timeout=30)

        async def all_committed() -> bool:
            return await committed(bootstrap, group) == {0: 4}

        await eventually(all_committed, timeout=10)
    # the next owner got the unfinished record and those behind it, never the committed one
    assert second.started == [(0, 1), (0, 2), (0, 3)]


async def test_same_key_in_turn_different_keys_side_by_side_and_failures_retried(stack: Stack) -> None:
    bootstrap, group = stack.kafka_bootstrap, f"test-pool-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(bootstrap, 1)
    await produce(bootstrap, topic, [(0, b"a"), (0, b"a"), (0, b"b"), (0, b"b"), (0, b"a")])
    running: Counter[bytes | None] = Counter()
    most: Counter[bytes | None] = Counter()
    overall: list[int] = []
    order: list[int] = []
    failures = {1: 1}  # offset 1 fails once, then succeeds

    async def handle(record: Record) -> None:
        running[record.key] += 1
        most[record.key] = max(most[record.key], running[record.key])
        overall.append(sum(running.values()))
        try:
            await asyncio.sleep(0.3)
            if failures.get(record.offset):
                failures[record.offset] -= 1
                raise RuntimeError("boom")
            order.append(record.offset)
        finally:
            running[record.key] -= 1

    pool = OrderedCommitPool(handle, name="test", max_in_flight=5, key_ordered=True, retry_seconds=0.1)
    async with consuming(bootstrap, topic, group, pool):

        async def all_committed() -> bool:
            return await committed(bootstrap, group) == {0: 5}

        await eventually(all_committed, timeout=30)
    assert most == {b"a": 1, b"b": 1} and max(overall) == 2
    assert [o for o in order if o in (0, 1, 4)] == [0, 1, 4]  # key a in offset order, the retry kept its turn
    assert [o for o in order if o in (2, 3)] == [2, 3]


async def test_a_handler_that_waits_for_its_turn_overlaps_only_what_comes_before_it(stack: Stack) -> None:
    """`handler_waits` (the clusterer): a record's early part runs while an earlier record of its key is in its
    ordered part; the ordered parts never overlap, run in offset order, and a failed one keeps its turn."""
    bootstrap, group = stack.kafka_bootstrap, f"test-pool-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(bootstrap, 1)
    await produce(bootstrap, topic, [(0, b"a"), (0, b"a"), (0, b"a"), (0, b"b"), (0, b"a")])
    ordered_now: Counter[bytes | None] = Counter()
    most: Counter[bytes | None] = Counter()
    order: list[int] = []
    early_beside_ordered = 0
    failures = {1: 1}

    async def handle(record: Record) -> None:
        nonlocal early_beside_ordered
        await asyncio.sleep(0.1 if record.offset == 0 else 0.2)  # the early part: counted, inputs loaded
        early_beside_ordered += ordered_now[record.key] > 0  # done while an earlier record is in its turn
        await wait_for_turn()
        ordered_now[record.key] += 1
        most[record.key] = max(most[record.key], ordered_now[record.key])
        try:
            await asyncio.sleep(0.3)
            if failures.get(record.offset):
                failures[record.offset] -= 1
                raise RuntimeError("boom")
            order.append(record.offset)
        finally:
            ordered_now[record.key] -= 1
        end_turn()
        await asyncio.sleep(0.2)  # after the commit: the next record's ordered part may run meanwhile

    pool = OrderedCommitPool(
        handle, name="test", max_in_flight=5, key_ordered=True, handler_waits=True, retry_seconds=0.1
    )
    async with consuming(bootstrap, topic, group, pool):

        async def all_committed() -> bool:
            return await committed(bootstrap, group) == {0: 5}

        await eventually(all_committed, timeout=30)
    assert most == {b"a": 1, b"b": 1}
    assert [o for o in order if o != 3] == [0, 1, 2, 4]  # key a in offset order; the retry kept its turn
    assert early_beside_ordered >= 1


async def test_a_rebalance_lets_in_flight_work_finish_and_the_next_owner_repeats_nothing(stack: Stack) -> None:
    bootstrap, group = stack.kafka_bootstrap, f"test-pool-{uuid.uuid4().hex[:8]}"
    topic = await new_topic(bootstrap, 2)
    await produce(bootstrap, topic, [(0, b"x"), (1, b"y")])
    first, second = Gates(), Gates()
    second.open_all()
    pool_a = OrderedCommitPool(first.handler, name="a", max_in_flight=4, revoke_seconds=20)
    async with consuming(bootstrap, topic, group, pool_a):
        await eventually(started(first, 2), timeout=30)
        pool_b = OrderedCommitPool(second.handler, name="b", max_in_flight=4)
        joining = asyncio.create_task(_join(bootstrap, topic, group, pool_b, hold=4.0))
        await asyncio.sleep(2.0)  # b joins; a's revoke waits for its two records
        first.open_all()
        await joining

        async def all_committed() -> bool:
            return await committed(bootstrap, group) == {0: 1, 1: 1}

        await eventually(all_committed, timeout=10)
    assert sorted(first.started) == [(0, 0), (1, 0)]
    assert second.started == []  # nothing was handed to the next owner twice


async def _join(bootstrap: str, topic: str, group: str, pool: OrderedCommitPool, hold: float) -> None:
    async with consuming(bootstrap, topic, group, pool):
        await asyncio.sleep(hold)
