"""Kafka plumbing shared by every service: broker factory, topic creation, dead letters, outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)
from faststream.kafka import KafkaBroker
from sqlalchemy import String, bindparam, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import kafka_fetch, metrics
from shared.contracts import utcnow
from shared.db.models import DeliveryAttempt, InboxMessage, OutboxMessage
from shared.db.session import autocommit
from shared.metrics.families import DEAD_LETTERS
from shared.partitioning import partition_for
from shared.topics import ALL_TOPICS, DLQ_REASON_HEADER, DLQ_SOURCE_HEADER

log = logging.getLogger(__name__)


# Consumers tuned for latency. aiokafka sends the next fetch to a broker only when the previous one has
# returned, and a partition whose buffered records were just used up is not part of the fetch already
# waiting there: with the client's default wait (500 ms) its next record can sit on the broker that long.
# A wait of tens of milliseconds bounds that; the broker still holds each fetch this long when nothing is
# new (fetch_min_bytes=1), so an idle consumer sends a few dozen small requests a second, it never spins.
FETCH_MAX_WAIT_MS = 25
# ...while a fetch that covers every assigned partition (an idle consumer's) waits longer (shared/kafka_fetch.py).
kafka_fetch.install()
CONSUMER_TUNING: dict[str, Any] = {"fetch_max_wait_ms": FETCH_MAX_WAIT_MS}
# Consumers off a run's critical path (publishing, rules, webhooks, ingest, publication status) wait longer per
# fetch: a fetch that returns empty every 25 ms costs CPU on both ends. An idle stack took 66 % of a core with
# every consumer at 25 ms and 33 % with all at 250 ms (Kafka 23 → 15 %, each worker 3.8 → 1.2 %; 2026-12-02).
# Stage commands and results keep 25 ms: their hops are the run's latency (issue 13).
RELAXED_FETCH_MAX_WAIT_MS = 250
RELAXED_CONSUMER_TUNING: dict[str, Any] = {"fetch_max_wait_ms": RELAXED_FETCH_MAX_WAIT_MS}


async def lenient_headers(record: Any, parse: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream decodes every header value as UTF-8 before any handler runs: one binary (or null) header
    from an upstream producer would fail the record where no handler can dead-letter it, and it would be
    skipped with only a log line. Such values reach the handlers with the undecodable bytes replaced."""
    if isinstance(record, tuple):  # a batch subscriber's records
        return await parse(tuple(_lenient(r) for r in record))
    return await parse(_lenient(record))


def _lenient(record: Any) -> Any:
    headers = getattr(record, "headers", None)
    if headers and not all(_utf8(value) for _, value in headers):
        fixed = [(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in headers]
        record = dataclasses.replace(record, headers=fixed)
    return record


def _utf8(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def make_broker(bootstrap: str, client_id: str, *, service: str | None = None) -> KafkaBroker:
    """`service`: the `app_name` label of FastStream's Prometheus metrics (default: the client id)."""
    # acks=all + idempotence: a relayed event is on the broker before its outbox row is marked sent.
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        parser=lenient_headers,
        middlewares=[metrics.kafka_middleware(service or client_id)],
        acks="all",
        enable_idempotence=True,
        partitioner=partition_for,  # stage commands spread evenly over partitions (shared/partitioning.py)
        allow_auto_create_topics=False,
        graceful_timeout=30.0,
        # FastStream's "Received"/"Processed" lines for every message: DEBUG, so a run of thousands of messages
        # does not spend its CPU on log lines (CONTENTLINE_LOG_LEVEL=DEBUG shows them). A failing handler is
        # still logged at ERROR.
        log_level=logging.DEBUG,
    )


async def ensure_topics(bootstrap: str, partitions: int, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create missing topics; returns the names created. Safe to run from several processes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="contentline-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            # Another process may win the race; the topics exist then, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        await admin.close()


# The producer refuses a record larger than its max_request_size (1 MiB by default), measured BEFORE
# compression, so producer-side compression cannot save an oversized dead letter: the copy compresses its
# body itself (gzip, marked by a content-encoding header) and, when even that is too large, keeps the start
# of the original. Size and SHA-256 of the original always travel along, so the copy can be matched with
# the producer's record. The margin leaves room for key, headers and batch overhead.
DEAD_LETTER_MAX_BODY = 900 * 1024
ENCODING_HEADER = "content-encoding"
ORIGINAL_SIZE_HEADER = "x-dead-letter-original-size"
ORIGINAL_SHA256_HEADER = "x-dead-letter-original-sha256"
TRUNCATED_HEADER = "x-dead-letter-truncated"
SOURCE_PARTITION_HEADER = "x-dead-letter-source-partition"
SOURCE_OFFSET_HEADER = "x-dead-letter-source-offset"
# Above this a body is compressed in a thread: gzip of a few MiB takes long enough to stall the event loop.
_INLINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class DeadLetterBody:
    body: bytes
    headers: dict[str, str]


def dead_letter_body(body: bytes, limit: int = DEAD_LETTER_MAX_BODY) -> DeadLetterBody:
    """The bytes a dead letter carries: the original when it fits, else gzip, else the gzip of its start."""
    if len(body) <= limit:
        return DeadLetterBody(body, {})
    headers = {
        ORIGINAL_SIZE_HEADER: str(len(body)),
        ORIGINAL_SHA256_HEADER: hashlib.sha256(body).hexdigest(),
        ENCODING_HEADER: "gzip",
    }
    packed = gzip.compress(body, compresslevel=6)
    if len(packed) <= limit:
        return DeadLetterBody(packed, headers)
    keep = int(len(body) * limit / len(packed) * 0.9)  # compression ratio of the whole predicts the start's
    while True:
        packed = gzip.compress(body[:keep], compresslevel=6)
        if len(packed) <= limit:
            headers[TRUNCATED_HEADER] = f"first {keep} of {len(body)} bytes"
            return DeadLetterBody(packed, headers)
        keep = int(keep * 0.8)


async def dead_letter(
    broker: KafkaBroker,
    topic: str,
    body: bytes,
    key: bytes | None,
    reason: str,
    source_topic: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
) -> None:
    """Park an unprocessable record with the reason in a header; the consumer then moves on.

    Raises when the broker does not take it; callers count that as a failed attempt (shared.consume).
    """
    copy = await asyncio.to_thread(dead_letter_body, body) if len(body) > _INLINE_BYTES else dead_letter_body(body)
    headers = {DLQ_REASON_HEADER: reason[:1000], DLQ_SOURCE_HEADER: source_topic, **copy.headers}
    if partition is not None and offset is not None:
        headers |= {SOURCE_PARTITION_HEADER: str(partition), SOURCE_OFFSET_HEADER: str(offset)}
    await broker.publish(copy.body, topic=topic, key=key, headers=headers)
    DEAD_LETTERS.labels(source_topic=source_topic, topic=topic).inc()
    log.warning(
        "dead-lettered a record from %s (%d bytes%s): %s",
        source_topic,
        len(body),
        ", " + copy.headers[TRUNCATED_HEADER] if TRUNCATED_HEADER in copy.headers else "",
        reason[:300],
    )


# The broker refuses these for this record whatever the timing: retrying cannot help until someone acts.
REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidTopicError, TopicAuthorizationFailedError)
PARK_AFTER_ATTEMPTS = 5


def refused_for_good(exc: BaseException) -> bool:
    """True for a record the broker will not take (too large, bad topic, not allowed) or that cannot be
    serialised; False for an outage (connection, timeout, leader moves): those are retried without limit."""
    return isinstance(exc, REFUSED_FOR_GOOD) or not isinstance(exc, KafkaError | OSError | TimeoutError)


class RelayBackoff(Exception):
    """The broker is unreachable or busy; what was sent is marked, the rest waits for the next round."""


@dataclass(frozen=True)
class Retention:
    outbox_hours: float = 24.0
    inbox_days: float = 14.0
    every_seconds: float = 600.0


# Whether a producer has rows to send: the partial index ix_outbox_unpublished answers it.
_HAS_ROWS = select(
    exists().where(
        OutboxMessage.producer == bindparam("of_producer", type_=String),
        OutboxMessage.published_at.is_(None),
        OutboxMessage.parked_at.is_(None),
    )
)


class OutboxRelay:
    """Publishes a producer's outbox rows in id order, then marks them sent (at-least-once).

    A crash between publish and mark re-sends the row on restart; consumers drop the duplicate by
    `message_id`. Replicas take turns per producer (an advisory lock), which keeps rows in id order.
    A row the broker refuses for good (too large, bad topic) is parked after PARK_AFTER_ATTEMPTS rounds,
    so it cannot block the rows behind it; an outage parks nothing.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        sessions: async_sessionmaker[AsyncSession],
        producer: str,
        poll_seconds: float = 1.0,
        batch_size: int = 200,
        retention: Retention | None = None,
        settle_seconds: float = 0.0,
    ) -> None:
        self._broker = broker
        self._sessions = sessions
        self._producer = producer
        self._poll = poll_seconds
        self._batch = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retention = retention or Retention()
        self._last_prune = 0.0
        # A round that found nothing waits this long before a wake-up may start the next: a lane's relay is
        # woken by every commit of its process, and most of them added nothing to its lane.
        self._settle = settle_seconds

    def wake(self) -> None:
        self._wake.set()

    async def relay_once(self) -> int:
        # Most rounds find nothing: the one after a round that sent (it checks for rows committed meanwhile), a
        # lane's on a commit that added nothing to it, the idle polls. They ask first, in one statement outside
        # a transaction: one round trip instead of BEGIN, the locking read and COMMIT (issue 13).
        async with autocommit(self._sessions) as session:
            if not await session.scalar(_HAS_ROWS, {"of_producer": self._producer}):
                return 0
        async with self._sessions.begin() as session:
            # One relay per producer at a time (replicas take turns), so rows go out in id order and one
            # site's messages keep their order; the lock ends with the transaction. Taken in the statement that
            # reads the rows (an uncorrelated subquery: PostgreSQL evaluates it once, as an InitPlan): a round
            # trip less per round. No rows when another replica holds it (tests/integration/test_outbox_lanes.py).
            locked = select(func.pg_try_advisory_xact_lock(func.hashtext(self._producer))).scalar_subquery()
            rows = (
                await session.scalars(
                    select(OutboxMessage)
                    .where(
                        locked,
                        OutboxMessage.producer == self._producer,
                        OutboxMessage.published_at.is_(None),
                        OutboxMessage.parked_at.is_(None),
                    )
                    .order_by(OutboxMessage.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            errors = await self._send(rows)
            sent = [row.id for row, error in zip(rows, errors, strict=True) if error is None]
            if sent:
                await session.execute(
                    update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(published_at=utcnow()),
                    execution_options={"synchronize_session": False},  # the loaded rows are not used after
                )
            outage: BaseException | None = None
            for row, error in zip(rows, errors, strict=True):
                if error is None:
                    continue
                if not refused_for_good(error):
                    outage = error
                    continue
                row.send_attempts += 1
                row.last_error = f"{type(error).__name__}: {error}"[:2000]
                if row.send_attempts >= PARK_AFTER_ATTEMPTS:
                    row.parked_at = utcnow()
                    log.error(
                        "parked outbox row %s (topic %s, key %s, message %s) after %d refusals: %s",
                        row.id,
                        row.topic,
                        row.key,
                        row.message_id,
                        row.send_attempts,
                        row.last_error,
                    )
        if outage is not None:
            raise RelayBackoff(str(outage)) from outage
        return len(sent)

    async def _send(self, rows: Sequence[OutboxMessage]) -> list[BaseException | None]:
        """Hand every row to the producer, then wait for the broker's acks: one error (or None) per row."""
        pending: list[Awaitable[object] | BaseException] = []
        for row in rows:
            try:
                pending.append(
                    await self._broker.publish(
                        row.payload,
                        topic=row.topic,
                        key=row.key.encode(),
                        headers={"message_id": row.message_id},
                        correlation_id=row.message_id,
                        no_confirm=True,
                    )
                )
            except Exception as exc:  # refused before sending, e.g. larger than the producer's request limit
                pending.append(exc)

        async def settle(item: Awaitable[object] | BaseException) -> BaseException | None:
            if isinstance(item, BaseException):
                return item
            try:
                await item
            except Exception as exc:
                return exc
            return None

        return list(await asyncio.gather(*(settle(p) for p in pending)))

    async def prune(self) -> tuple[int, int]:
        """Delete this producer's sent outbox rows, its inbox rows and stale attempt counts past retention."""
        now = utcnow()
        async with self._sessions.begin() as session:
            sent = await session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.producer == self._producer,
                    OutboxMessage.published_at < now - timedelta(hours=self._retention.outbox_hours),
                )
            )
            # Duplicates arrive within minutes (redelivery after a crash or rebalance); days is ample.
            seen = await session.execute(
                delete(InboxMessage).where(
                    InboxMessage.consumer.startswith(self._producer),
                    InboxMessage.processed_at < now - timedelta(days=self._retention.inbox_days),
                )
            )
            # Counts left by a consumer that lost its message for good (normally each row is cleared at once).
            await session.execute(
                delete(DeliveryAttempt).where(
                    DeliveryAttempt.consumer.startswith(self._producer),
                    DeliveryAttempt.updated_at < now - timedelta(days=self._retention.inbox_days),
                )
            )
        return int(getattr(sent, "rowcount", 0) or 0), int(getattr(seen, "rowcount", 0) or 0)

    async def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < self._retention.every_seconds:
            return
        self._last_prune = time.monotonic()
        try:
            await self.prune()
        except Exception:  # housekeeping must never stop the relay
            log.exception("outbox/inbox pruning failed")

    async def _run(self) -> None:
        while not self._stopping:
            await self._maybe_prune()
            # Cleared before the round, not after it: a commit that lands while an empty round reads must
            # start another round, not wait for the poll.
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except RelayBackoff as exc:
                log.warning("outbox relay: broker unavailable (%s); retrying", exc)
                await asyncio.sleep(self._poll)
                continue
            except Exception:  # DB hiccup: keep the rows, back off, try again
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(self._poll)
                continue
            if sent:
                continue
            if self._settle:
                await asyncio.sleep(self._settle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._producer}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()
        # What the last in-flight work committed goes out now rather than at the next start.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay_once(), timeout=5)
