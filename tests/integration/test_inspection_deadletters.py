"""Dead letters against the real stack: a poisoned record shows up with its reason, a fixed cause's
record is replayed with effect once (also when replayed twice), and compressed or truncated bodies
read and replay as they should."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import KeywordBatchIngested, KeywordIn
from shared.db.models import Account, ActivityLog, Keyword, Site
from shared.inspection import (
    REPLAYED_FROM_HEADER,
    DeadLetter,
    DeadLetterFilter,
    RecordNotFoundError,
    RecordRef,
    ReplayStatus,
    UnknownTopicError,
    consumer_lag,
    list_dead_letters,
    replay_dead_letters,
    show_dead_letter,
    tail_topic,
)
from shared.topics import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER, KEYWORDS_INGEST, KEYWORDS_INGEST_DLQ
from tests.helpers import eventually, publish, read_topic
from tests.integration.test_inspection import new_topic

ORCHESTRATOR_GROUP = "contentline-orchestrator"


async def dead_letters_of(stack: Stack, key: str) -> list[DeadLetter]:
    return await list_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, DeadLetterFilter(key=key))


async def show(stack: Stack, ref: RecordRef) -> DeadLetter:
    return await show_dead_letter(stack.kafka_bootstrap, ref.topic, ref.partition, ref.offset)


async def test_a_poisoned_record_shows_up_in_the_dead_letters_with_its_reason(stack: Stack) -> None:
    key = f"poison-{uuid.uuid4().hex[:8]}"
    garbage = b"\x00\xff not a keyword batch " + key.encode()
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, garbage, key=key.encode())

    (letter,) = await eventually(lambda: dead_letters_of(stack, key), timeout=60)
    assert letter.reason is not None and letter.reason.startswith("invalid message: ")
    assert "json" in letter.reason.lower()
    assert letter.source_topic == KEYWORDS_INGEST and letter.ref.topic == KEYWORDS_INGEST_DLQ
    assert letter.timestamp is not None and abs(datetime.now(UTC) - letter.timestamp) < timedelta(minutes=5)
    assert letter.body.size == letter.body.stored_bytes == len(garbage) and not letter.body.is_json
    assert key in letter.body.text and not letter.body.truncated and letter.contract is None
    assert letter.message_id is None and letter.replayable  # complete bytes: a changed consumer could take them

    # Listed with every dead-letter topic too, and shown alone with the same reason.
    everywhere = await list_dead_letters(stack.kafka_bootstrap, where=DeadLetterFilter(key=key))
    assert [x.ref for x in everywhere] == [letter.ref]
    shown = await show(stack, letter.ref)
    assert shown.reason == letter.reason and shown.replays_checked and shown.replays == []
    by_reason = DeadLetterFilter(reason_contains="INVALID MESSAGE", key=key)
    assert [x.ref for x in await list_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, by_reason)] == [
        letter.ref
    ]

    # The dry run says it would go back, and that an unchanged consumer will refuse it again.
    one = DeadLetterFilter(partition=letter.ref.partition, offset=letter.ref.offset)
    report = await replay_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, one)
    (item,) = report.items
    assert report.dry_run and item.status is ReplayStatus.WOULD_REPLAY and item.target_topic == KEYWORDS_INGEST
    assert "does not validate" in item.detail

    async with contextlib.aclosing(tail_topic(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, last=50, follow=False)) as t:
        lines = [line async for line in t if line.ref == letter.ref]
    assert lines[0].summary.startswith("[dead letter: invalid message: ") and "raw: b'\\x00\\xff" in lines[0].summary


async def test_replay_after_the_cause_is_fixed_takes_effect_once_even_when_replayed_twice(
    stack: Stack, db: async_sessionmaker[AsyncSession]
) -> None:
    account, site = f"inspect-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:16]
    batch = KeywordBatchIngested(
        account_id=account,
        site_id=site,
        source="inspect-test",
        keywords=[KeywordIn(keyword=f"replayed keyword {i}") for i in range(3)],
    )
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, batch.model_dump_json().encode(), key=site.encode())

    # The site does not exist yet: the batch is dead-lettered with that reason.
    (letter,) = await eventually(lambda: dead_letters_of(stack, site), timeout=60)
    assert letter.reason == f"site {site!r} does not exist" and letter.source_topic == KEYWORDS_INGEST
    assert letter.message_id == batch.message_id and letter.contract == "KeywordBatchIngested" and letter.replayable
    assert letter.body.is_json and letter.body.text.startswith('{\n  "message_id"')
    one = DeadLetterFilter(partition=letter.ref.partition, offset=letter.ref.offset)

    async def keywords() -> int:
        async with db() as s:
            return int(await s.scalar(select(func.count()).select_from(Keyword).where(Keyword.site_id == site)) or 0)

    dry = await replay_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, one)
    assert [i.status for i in dry.items] == [ReplayStatus.WOULD_REPLAY] and dry.items[0].replayed_to is None
    assert (await show(stack, letter.ref)).replays == []

    # The cause is fixed: the site exists now (inserted directly; creating it is the API's business).
    async with db.begin() as s:
        s.add(Account(id=account, name="inspection test"))
        await s.flush()
        s.add(Site(id=site, account_id=account, name="inspection test", domain="example.com"))

    first = await replay_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, one, dry_run=False)
    (item,) = first.items
    assert item.status is ReplayStatus.REPLAYED and item.message_id == batch.message_id
    assert item.replayed_to is not None and item.replayed_to.topic == KEYWORDS_INGEST

    async def imported() -> bool:
        return await keywords() == 3

    await eventually(imported, timeout=60)

    # A second replay is refused, naming the first; forced, it goes out and the inbox drops it.
    again = await replay_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, one, dry_run=False)
    assert again.items[0].status is ReplayStatus.ALREADY_REPLAYED and str(item.replayed_to) in again.items[0].detail
    forced = await replay_dead_letters(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, one, dry_run=False, force=True)
    assert forced.items[0].status is ReplayStatus.REPLAYED
    second = forced.items[0].replayed_to
    assert (
        second is not None
        and second.partition == item.replayed_to.partition
        and second.offset > item.replayed_to.offset
    )

    async def orchestrator_passed_it() -> bool:
        (group,) = await consumer_lag(stack.kafka_bootstrap, groups=[ORCHESTRATOR_GROUP], topics=[KEYWORDS_INGEST])
        row = next(r for r in group.partitions if r.partition == second.partition)
        return row.committed is not None and row.committed > second.offset

    await eventually(orchestrator_passed_it, timeout=60)
    assert await keywords() == 3
    async with db() as s:
        imports = (
            await s.scalars(
                select(ActivityLog.message).where(ActivityLog.site_id == site, ActivityLog.message.like("imported %"))
            )
        ).all()
    assert imports == ["imported 3 keywords from kafka:inspect-test (0 duplicates)"]
    assert [x.ref for x in await dead_letters_of(stack, site)] == [letter.ref]  # dropped, not dead-lettered again

    # Both replays are on the ingest topic: same bytes, same key, marked with where they came from.
    replays = await read_topic(
        stack.kafka_bootstrap,
        KEYWORDS_INGEST,
        lambda r: (REPLAYED_FROM_HEADER, str(letter.ref).encode()) in list(r.headers or ()),
    )
    assert [(r.partition, r.offset) for r in replays] == [
        (item.replayed_to.partition, item.replayed_to.offset),
        (second.partition, second.offset),
    ]
    assert all(r.key == site.encode() and r.value == batch.model_dump_json().encode() for r in replays)
    assert all(not any(k.startswith("x-dead-letter") for k, _ in r.headers) for r in replays)
    shown = await show(stack, letter.ref)
    assert [m.at for m in shown.replays] == [item.replayed_to, second]


async def test_compressed_and_truncated_bodies_read_and_replay_correctly(stack: Stack) -> None:
    dlq = await new_topic(stack.kafka_bootstrap, partitions=1, suffix=".dlq")
    target = await new_topic(stack.kafka_bootstrap, partitions=1)
    keywords = [KeywordIn(keyword=f"keyword number {i}") for i in range(200)]
    batch = KeywordBatchIngested(account_id="a", site_id="s", keywords=keywords)
    original = batch.model_dump_json().encode()
    packed = gzip.compress(original)
    digest = hashlib.sha256(original).hexdigest().encode()
    about = [(DLQ_SOURCE_HEADER, target.encode()), ("x-dead-letter-original-sha256", digest)]
    size = [("x-dead-letter-original-size", str(len(original)).encode())]
    gz = [("x-dead-letter-content-encoding", b"gzip")]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    records = [  # (value, headers): compressed whole, compressed cut, plain cut, an informational copy
        (packed, [(DLQ_REASON_HEADER, b"too large"), *about, *gz, ("trace", b"t-1")]),
        (packed[: len(packed) // 2], [(DLQ_REASON_HEADER, b"too large, cut"), *about, *size, *gz]),
        (original[:100], [(DLQ_REASON_HEADER, b"too large, cut plain"), *about, *size]),
        (b'{"failures": []}', [("message_id", b"from-the-outbox")]),  # no id in the body: the header's
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for i, (value, headers) in enumerate(records):
            when = int((t0 + timedelta(minutes=i)).timestamp() * 1000)
            await producer.send_and_wait(dlq, value, key=b"site-key", headers=headers, timestamp_ms=when)
    finally:
        await producer.stop()

    whole, cut, cut_plain, copy = await list_dead_letters(stack.kafka_bootstrap, dlq)
    assert (whole.body.encoding, whole.body.stored_bytes, whole.body.size) == ("gzip", len(packed), len(original))
    assert whole.body.sha256_matches and not whole.body.truncated and whole.body.is_json
    assert not whole.replayable and "not a topic replays may go to" in (whole.not_replayable_because or "")
    assert whole.body.text_truncated and len(whole.body.text) == 501 and whole.body.text.startswith("{\n")
    assert whole.message_id == batch.message_id and whole.timestamp == t0 and whole.key == "site-key"
    assert cut.body.truncated and cut.body.decode_error and not cut.replayable
    assert "truncated" in (cut.not_replayable_because or "")
    assert (cut_plain.body.size, cut_plain.body.original_size) == (100, len(original))
    assert cut_plain.body.truncated and cut_plain.body.sha256_matches is False and not cut_plain.replayable
    assert copy.reason is None and copy.message_id == "from-the-outbox" and not copy.replayable
    assert "informational copy" in (copy.not_replayable_because or "")

    window = DeadLetterFilter(since=t0 + timedelta(minutes=1), until=t0 + timedelta(minutes=3))
    assert [x.ref for x in await list_dead_letters(stack.kafka_bootstrap, dlq, window)] == [cut.ref, cut_plain.ref]
    assert [x.ref for x in await list_dead_letters(stack.kafka_bootstrap, dlq, limit=2)] == [cut_plain.ref, copy.ref]

    # Replays go only where allowed: to our own topics by default, to this test's target when given.
    everything = DeadLetterFilter()
    with pytest.raises(ValueError, match="allow_all"):
        await replay_dead_letters(stack.kafka_bootstrap, dlq, everything)
    refused = await replay_dead_letters(stack.kafka_bootstrap, dlq, everything, allow_all=True)
    assert "not a topic replays may go to" in refused.items[0].detail
    dry = await replay_dead_letters(stack.kafka_bootstrap, dlq, everything, allow_all=True, targets={target})
    statuses = [i.status for i in dry.items]
    assert statuses == [ReplayStatus.WOULD_REPLAY] + [ReplayStatus.NOT_REPLAYABLE] * 3
    done = await replay_dead_letters(
        stack.kafka_bootstrap, dlq, everything, allow_all=True, targets={target}, dry_run=False
    )
    assert [i.status for i in done.items] == [ReplayStatus.REPLAYED] + [ReplayStatus.NOT_REPLAYABLE] * 3

    (sent,) = await read_topic(stack.kafka_bootstrap, target)
    assert sent.value == original and sent.key == b"site-key"  # decompressed: what the consumer first got
    assert dict(sent.headers) == {"trace": b"t-1", REPLAYED_FROM_HEADER: f"{dlq}/0/0".encode()}

    with pytest.raises(ValueError, match="not a dead-letter topic"):
        await list_dead_letters(stack.kafka_bootstrap, target)
    with pytest.raises(RecordNotFoundError):
        await show_dead_letter(stack.kafka_bootstrap, dlq, 0, 99)
    with pytest.raises(UnknownTopicError):
        await list_dead_letters(stack.kafka_bootstrap, "inspect-test-no-such-topic.dlq")


def test_filters_refuse_what_they_cannot_mean() -> None:
    with pytest.raises(ValidationError, match="needs a partition"):
        DeadLetterFilter(offset=3)
    with pytest.raises(ValidationError, match="needs a timezone"):
        DeadLetterFilter(since=datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="before until"):
        DeadLetterFilter(since=datetime(2026, 1, 2, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC))
    assert DeadLetterFilter().is_empty and not DeadLetterFilter(key="k").is_empty
