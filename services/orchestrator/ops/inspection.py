"""The operator's view of the Kafka side, over shared.inspection: topics, consumer lag, dead letters (list,
show, replay with a dry run) and a tail that pages with a cursor.

The library's errors become the API's: an unknown topic or record is 404, a bad filter 422 naming the field,
a broker that cannot be reached 503. The tail is a bounded read or a long poll (`follow`: wait up to `wait`
seconds for the first new record) that returns a cursor; a client follows a topic by asking again with it.
That keeps every request short (proxies, load balancers and the schema tests never hold a stream open) and
loses nothing between two requests, which a reconnecting stream would.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from services.orchestrator.errors import NotFoundError, ProblemError
from shared.inspection import (
    DeadLetter,
    DeadLetterFilter,
    GroupLag,
    InspectionError,
    RecordNotFoundError,
    ReplayReport,
    TailLine,
    TopicSummary,
    UnknownTopicError,
    consumer_lag,
    decode_line,
    list_dead_letters,
    list_topics,
    replay_dead_letters,
    show_dead_letter,
)
from shared.inspection.clients import STALL_SECONDS, offset_bounds, open_clients

CURSOR_PATTERN = r"^[0-9]{1,10}:[0-9]{1,19}(,[0-9]{1,10}:[0-9]{1,19})*$"


class BrokerUnavailableError(ProblemError):
    status = 503
    slug = "broker-unavailable"


class PartitionPosition(BaseModel):
    partition: int
    next_offset: int


class TailPage(BaseModel):
    topic: str
    lines: list[TailLine]
    cursor: str = Field(description="pass it back as `cursor` to read on from here (partition:next offset,...)")
    positions: list[PartitionPosition]
    at_end: bool = Field(description="every partition was read up to its end")


def parse_cursor(cursor: str | None) -> dict[int, int] | None:
    if cursor is None:
        return None
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise _invalid("query", "cursor", "expected partition:offset pairs separated by commas, e.g. 0:12,1:40")
    return {int(p): int(o) for p, o in (pair.split(":") for pair in cursor.split(","))}


def _invalid(where: str, field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "msg": message}])


def filter_of(where: str, **fields: Any) -> DeadLetterFilter:
    """A DeadLetterFilter from request fields; 422 naming the field when they do not make one."""
    try:
        return DeadLetterFilter(**fields)
    except ValidationError as exc:
        raise RequestValidationError([_located(where, e) for e in exc.errors()]) from None


def _located(where: str, error: Any) -> dict[str, Any]:
    """A filter error at `where.<field>`; the library's own checks say "<field>: <why>" (no location of their own)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    loc = tuple(error["loc"])
    field, _, why = message.partition(": ")
    if not loc and why and field.isidentifier():
        loc, message = (field,), why
    return {"type": error["type"], "loc": (where, *loc), "msg": message, "input": None}


@contextlib.contextmanager
def translated(where: str = "query") -> Iterator[None]:
    """The library's errors as the API's: 404, 422 (naming the field), 503."""
    try:
        yield
    except (UnknownTopicError, RecordNotFoundError) as exc:
        raise NotFoundError(str(exc)) from None
    except ValueError as exc:  # e.g. "topic: 'x' is not a dead-letter topic", "where: an empty filter ..."
        field, _, why = str(exc).partition(": ")
        raise _invalid(where, field if why and field.isidentifier() else "request", why or str(exc)) from None
    except (KafkaError, InspectionError, TimeoutError, OSError) as exc:
        raise BrokerUnavailableError(f"the Kafka broker did not answer: {type(exc).__name__}: {exc}") from None


class Inspector:
    """The inspection library bound to the orchestrator's broker."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap

    async def topics(self) -> list[TopicSummary]:
        with translated():
            return await list_topics(self._bootstrap)

    async def topic(self, name: str) -> TopicSummary:
        with translated():
            (summary,) = await list_topics(self._bootstrap, [name])
        if not summary.exists:
            raise NotFoundError(f"topic {name!r} does not exist")
        return summary

    async def lag(self, groups: list[str] | None, topics: list[str] | None) -> list[GroupLag]:
        with translated():
            return await consumer_lag(self._bootstrap, groups=groups or None, topics=topics or None)

    async def dead_letters(
        self, topic: str | None, where: DeadLetterFilter, limit: int, body_chars: int, check_replays: bool
    ) -> list[DeadLetter]:
        with translated():
            return await list_dead_letters(
                self._bootstrap, topic, where, limit=limit, body_chars=body_chars, check_replays=check_replays
            )

    async def dead_letter(self, topic: str, partition: int, offset: int, body_chars: int) -> DeadLetter:
        with translated("path"):
            return await show_dead_letter(self._bootstrap, topic, partition, offset, body_chars=body_chars)

    async def replay(
        self, topic: str, where: DeadLetterFilter, *, dry_run: bool, force: bool, allow_all: bool
    ) -> ReplayReport:
        with translated("body"):
            return await replay_dead_letters(
                self._bootstrap, topic, where, dry_run=dry_run, force=force, allow_all=allow_all
            )

    async def tail(
        self, topic: str, *, cursor: dict[int, int] | None, last: int, limit: int, follow: bool, wait: float
    ) -> TailPage:
        with translated():
            return await _tail_page(self._bootstrap, topic, cursor, last, limit, follow, wait)


def _record_order(record: Any) -> tuple[int, int, int]:
    return record.timestamp, record.partition, record.offset


async def _tail_page(
    bootstrap: str, topic: str, cursor: dict[int, int] | None, last: int, limit: int, follow: bool, wait: float
) -> TailPage:
    """Decoded records from the cursor (or the last `last` of each partition) up to the end the topic had when
    the call began; with `follow` and nothing new, wait up to `wait` seconds for the first new records."""
    async with open_clients(bootstrap) as clients:
        consumer = clients.consumer
        partitions = await clients.partitions(topic)  # UnknownTopicError → 404
        beginning, end = await offset_bounds(consumer, partitions)
        start: dict[TopicPartition, int] = {}
        for tp in partitions:
            if cursor is None:
                start[tp] = max(end[tp] - last, beginning[tp])
            else:  # a partition the cursor does not know (added since) is read from its beginning
                start[tp] = min(max(cursor.get(tp.partition, beginning[tp]), beginning[tp]), end[tp])
            consumer.seek(tp, start[tp])
        lines: list[TailLine] = []
        deadline = time.monotonic() + wait
        last_progress = time.monotonic()
        while len(lines) < limit:
            at_end = all([await consumer.position(tp) >= end[tp] for tp in partitions])
            now = time.monotonic()
            if at_end and (not follow or lines or now >= deadline):
                break
            timeout = 0.5 if not at_end else min(1.0, deadline - now)
            batch = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=limit - len(lines))
            records = sorted((r for rs in batch.values() for r in rs), key=_record_order)
            lines += [decode_line(r) for r in records]
            if records or at_end:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_SECONDS:
                raise TimeoutError(f"no progress reading {topic} for {STALL_SECONDS:.0f}s")
        for line in lines:
            tp = TopicPartition(topic, line.ref.partition)
            start[tp] = max(start[tp], line.ref.offset + 1)
        done = all(start[tp] >= end[tp] for tp in partitions)
    positions = [PartitionPosition(partition=tp.partition, next_offset=start[tp]) for tp in partitions]
    return TailPage(
        topic=topic,
        lines=lines,
        cursor=",".join(f"{p.partition}:{p.next_offset}" for p in positions),
        positions=positions,
        at_end=done,
    )
