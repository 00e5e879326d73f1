"""Consumers wait long on the broker only when that cannot delay a record (shared/kafka_fetch.py), against the
real broker: an idle consumer long-polls and still gets a new record at once; one with records buffered keeps
the short wait for the partitions its fetch leaves out."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.stack import Stack
from shared import kafka_fetch
from shared.kafka import CONSUMER_TUNING, FETCH_MAX_WAIT_MS, ensure_topics

PARTITIONS = 3


class Counting(kafka_fetch.IdleAwareFetcher):
    """Counts the fetches built, and with which wait."""

    built: list[int]

    def _get_actions_per_node(self, assignment):  # type: ignore[no-untyped-def]
        out = super()._get_actions_per_node(assignment)
        if out[0]:
            type(self).built.append(self.last_wait_ms or 0)
        return out


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[Counting]:
    Counting.built = []
    monkeypatch.setattr("aiokafka.consumer.consumer.Fetcher", Counting)
    return Counting


async def consumer_on(stack: Stack, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"fetch-wait-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        **CONSUMER_TUNING,
    )
    await consumer.start()
    while not consumer.assignment():  # joined the group, partitions assigned
        await asyncio.sleep(0.05)
    return consumer


async def test_an_idle_consumer_long_polls_and_still_gets_a_new_record_at_once(
    stack: Stack, counting: type[Counting], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long idle wait: if it delayed records, the record below would take seconds to arrive.
    monkeypatch.setattr(kafka_fetch, "IDLE_FETCH_MAX_WAIT_MS", 8000)
    topic = f"contentline.test.fetchwait.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, PARTITIONS, [topic])
    consumer = await consumer_on(stack, topic)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        waiting = asyncio.create_task(consumer.getone())
        await asyncio.sleep(2)
        idle = list(counting.built)
        # 25 ms fetches would be ~80 in these two seconds; long polls are a handful
        assert idle and len(idle) <= 10 and set(idle[-2:]) == {8000}, idle
        sent = time.monotonic()
        await producer.send_and_wait(topic, b"now", partition=PARTITIONS - 1)
        record = await asyncio.wait_for(waiting, timeout=30)
        assert record.value == b"now"
        assert time.monotonic() - sent < 4  # well inside the 8 s long poll it arrived during
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_consumer_with_records_buffered_keeps_the_short_wait(
    stack: Stack, counting: type[Counting], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_fetch, "IDLE_FETCH_MAX_WAIT_MS", 8000)
    topic = f"contentline.test.fetchwait.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, PARTITIONS, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):  # three records of partition 0: one is read, two stay buffered
            await producer.send_and_wait(topic, f"p0-{n}".encode(), partition=0)
        consumer = await consumer_on(stack, topic)
        try:
            first = await asyncio.wait_for(consumer.getone(), timeout=30)
            assert first.value == b"p0-0"
            await asyncio.sleep(0.5)
            # partition 0 has records buffered, so the fetches leave it out: the consumer's own short wait
            assert counting.built[-1] == FETCH_MAX_WAIT_MS and len(counting.built) >= 5, counting.built
            sent = time.monotonic()
            await producer.send_and_wait(topic, b"p1", partition=1)
            got = [(await asyncio.wait_for(consumer.getone(), timeout=30)).value for _ in range(3)]
            assert sorted(got) == [b"p0-1", b"p0-2", b"p1"] and time.monotonic() - sent < 4
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
