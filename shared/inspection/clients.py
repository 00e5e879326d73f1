"""Short-lived aiokafka clients for inspection, and a bounded read over a snapshot of partitions.

Inspection never joins a consumer group and never commits: it assigns partitions by hand, so looking
at a topic cannot move anyone's offsets or trigger a rebalance.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError, for_code

from shared.inspection.models import InspectionError, UnknownTopicError

CLIENT_ID = "contentline-inspect"
# A read that makes no progress for this long is stuck (broker gone, partition without leader): say so.
STALL_SECONDS = 30.0


@asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def manual_consumer(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group: offsets are looked up and partitions assigned by the caller."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def replay_producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    # acks=all + idempotence, like the services' own producers: a replay reported done is on the broker.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Clients:
    """An admin client (metadata) and a group-less consumer (offsets, reading), opened together."""

    admin: AIOKafkaAdminClient
    consumer: AIOKafkaConsumer

    async def partitions(self, topic: str) -> list[TopicPartition]:
        """The topic's partitions; UnknownTopicError if it does not exist."""
        (info,) = await self.admin.describe_topics([topic])
        if info["error_code"] == UnknownTopicOrPartitionError.errno:
            raise UnknownTopicError(f"topic {topic!r} does not exist")
        if info["error_code"]:
            raise InspectionError(f"cannot describe topic {topic!r}: {for_code(info['error_code']).__name__}")
        return [TopicPartition(topic, p["partition"]) for p in sorted(info["partitions"], key=lambda p: p["partition"])]


@asynccontextmanager
async def open_clients(bootstrap: str) -> AsyncIterator[Clients]:
    async with admin_client(bootstrap) as admin, manual_consumer(bootstrap) as consumer:
        yield Clients(admin, consumer)


async def offset_bounds(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offsets per partition. Assigns them first: a consumer only keeps metadata of its
    assigned topics, and looking up offsets of others waits a metadata round (~1 s) for each call."""
    consumer.assign(partitions)
    return dict(await consumer.beginning_offsets(partitions)), dict(await consumer.end_offsets(partitions))


async def offsets_at(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], when: datetime | None
) -> dict[TopicPartition, int]:
    """Per partition, the first offset whose timestamp is >= `when` (the end if none); the beginning without `when`."""
    beginning, end = await offset_bounds(consumer, partitions)
    if when is None:
        return beginning
    found = await consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in partitions})
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in partitions}


async def read_span(
    consumer: AIOKafkaConsumer, start: Mapping[TopicPartition, int], end: Mapping[TopicPartition, int]
) -> AsyncIterator[Any]:
    """Yield every record with start <= offset < end per partition, then stop (a snapshot, never a follow)."""
    todo = {tp: stop for tp, stop in end.items() if start.get(tp, stop) < stop}
    if not todo:
        return
    consumer.assign(list(todo))
    for tp in todo:
        consumer.seek(tp, start[tp])
    last_progress = time.monotonic()
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=500)
        for tp, records in batch.items():
            for record in records:
                if record.offset < end[tp]:
                    yield record
        progressed = bool(batch)
        for tp in list(todo):
            # Position, not a count: compaction and transaction markers leave offsets without records.
            if await consumer.position(tp) >= todo[tp]:
                consumer.pause(tp)
                del todo[tp]
                progressed = True
        if progressed:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            waiting = ", ".join(f"{tp.topic}/{tp.partition}" for tp in todo)
            raise TimeoutError(f"no progress reading {waiting} for {STALL_SECONDS:.0f}s")


def record_time(record: Any) -> datetime | None:
    """The record's timestamp (producer's create time on our topics) as an aware datetime."""
    ms = getattr(record, "timestamp", None)
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def text_headers(record: Any) -> dict[str, str]:
    """Headers as text (a repeated header keeps its last value; ours are never repeated)."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in (record.headers or ())}


def text_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")
