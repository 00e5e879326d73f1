"""Follow a topic like kcat, but decoding our contracts into one readable line per message."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import TopicPartition

from shared.inspection.clients import offset_bounds, open_clients, record_time, text_headers, text_key
from shared.inspection.decoding import decode_body, decode_contract, raw_preview, summarise
from shared.inspection.models import RecordRef, TailLine
from shared.topics import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER


def decode_line(record: Any) -> TailLine:
    """One record as a TailLine: the topic's contract if the value validates, else the raw value."""
    headers = text_headers(record)
    value: bytes | None = record.value
    truncated = False
    if DLQ_REASON_HEADER in headers and value is not None:  # a dead letter: maybe compressed or truncated
        value, body = decode_body(value, headers, 0)
        truncated = body.truncated
    message = decode_contract(headers.get(DLQ_SOURCE_HEADER, record.topic), value)
    try:
        data: Any = json.loads(value) if value else None
    except ValueError:
        data = None
    summary = summarise(message) if message is not None else f"raw: {raw_preview(value)}"
    if DLQ_REASON_HEADER in headers:
        cut = " (truncated body)" if truncated else ""
        summary = f"[dead letter{cut}: {headers[DLQ_REASON_HEADER][:200]}] {summary}"
    return TailLine(
        ref=RecordRef(topic=record.topic, partition=record.partition, offset=record.offset),
        timestamp=record_time(record),
        key=text_key(record.key),
        contract=type(message).__name__ if message is not None else None,
        summary=summary,
        data=data,
        headers=headers,
    )


async def tail_topic(
    bootstrap: str,
    topic: str,
    *,
    last: int = 0,
    follow: bool = True,
    limit: int | None = None,
    idle_seconds: float | None = None,
) -> AsyncIterator[TailLine]:
    """Decoded records of `topic`: the `last` N of each partition, then (with `follow`) new ones as they come.

    Stops after `limit` lines, after `idle_seconds` without a record, or (without `follow`) at the end the
    topic had when the call started. Close it when done (`contextlib.aclosing`), so its consumer stops.
    Raises UnknownTopicError for a topic that does not exist.
    """
    if last < 0:
        raise ValueError("last: must be 0 or more")
    async with open_clients(bootstrap) as clients:
        consumer = clients.consumer
        partitions = await clients.partitions(topic)
        beginning, end = await offset_bounds(consumer, partitions)
        for tp in partitions:
            consumer.seek(tp, max(end[tp] - last, beginning[tp]))
        emitted, quiet_since = 0, time.monotonic()
        while limit is None or emitted < limit:
            if not follow and all([await consumer.position(tp) >= end[tp] for tp in partitions]):
                return
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            records = sorted(
                (
                    r
                    for rs in batch.values()
                    for r in rs
                    if follow or r.offset < end[TopicPartition(r.topic, r.partition)]
                ),
                key=lambda r: (r.timestamp, r.partition, r.offset),
            )
            if records:
                quiet_since = time.monotonic()
            elif idle_seconds is not None and time.monotonic() - quiet_since > idle_seconds:
                return
            for record in records:
                yield decode_line(record)
                emitted += 1
                if limit is not None and emitted >= limit:
                    return
