"""Ingest and dead letters never wedge a partition (issue 9): a 100,000-keyword record (gzip on the wire,
over 4 MiB raw), garbage bytes and a wrong-schema record each reach the dead-letter topic with a reason
within the bounded attempts, and a valid batch produced behind them on the same partition is imported.
A dead letter the broker refuses counts as an attempt, and the record is given up on after the limit."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared import consume
from shared.consume import MAX_ATTEMPTS, Record, parse_record
from shared.contracts import KeywordBatchIngested, KeywordIn
from shared.db.models import DeliveryAttempt, Keyword
from shared.kafka import (
    ENCODING_HEADER,
    ORIGINAL_SHA256_HEADER,
    ORIGINAL_SIZE_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
)
from shared.topics import DLQ_REASON_HEADER, KEYWORDS_INGEST, KEYWORDS_INGEST_DLQ
from tests.helpers import Tenant, create_site, eventually, read_topic

INGEST_CONSUMER = "orchestrator.ingest"


def keyword_batch(account_id: str, site_id: str, keywords: list[str]) -> KeywordBatchIngested:
    """Every valid ingest batch of these tests is built here."""
    return KeywordBatchIngested(
        account_id=account_id, site_id=site_id, source="dlq-test", keywords=[KeywordIn(keyword=k) for k in keywords]
    )


def huge_batch(account_id: str, site_id: str, n: int = 100_000) -> bytes:
    """A batch far over the 10,000-keyword limit, the size upstream systems have sent (4+ MiB raw)."""
    rng = random.Random(13)
    heads = ["running shoes", "coffee grinder", "dog training", "mortgage rates", "indoor plants", "japan travel"]
    mods = ["best", "cheap", "review", "for beginners", "near me", "2026", "vs", "how to choose", "guide"]
    keywords = [
        {"keyword": f"{rng.choice(heads)} {rng.choice(mods)} {rng.choice(mods)} {i}", "volume": rng.randint(0, 9999)}
        for i in range(n)
    ]
    return json.dumps(
        {"message_id": uuid.uuid4().hex, "account_id": account_id, "site_id": site_id, "keywords": keywords}
    ).encode()


async def test_unusable_ingest_records_are_dead_lettered_and_the_partition_moves_on(
    stack: Stack, api: httpx.Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    huge = huge_batch(tenant.account_id, site)
    assert len(huge) > 4 * 1024 * 1024
    garbage = random.Random(5).randbytes(3000)
    wrong_schema = json.dumps({"message_id": uuid.uuid4().hex, "site": site, "keywords": "espresso"}).encode()
    good_bytes = keyword_batch(tenant.account_id, site, ["espresso grinder", "milk frother"]).model_dump_json().encode()

    # gzip on the wire keeps the huge record under the broker's 1 MiB; the client limit is on the raw size.
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", compression_type="gzip", max_request_size=16 << 20
    )
    await producer.start()
    try:
        sent = []
        binary_header = [("x-upstream-trace", b"\xff\xfe\x00")]  # not UTF-8: must not stop the record either
        for value, headers in ((huge, None), (garbage, binary_header), (wrong_schema, None), (good_bytes, None)):
            sent.append(
                await producer.send_and_wait(KEYWORDS_INGEST, value, key=site.encode(), partition=0, headers=headers)
            )
    finally:
        await producer.stop()
    assert [m.partition for m in sent] == [0] * 4 and [m.offset for m in sent] == list(
        range(sent[0].offset, sent[0].offset + 4)
    )

    async def imported() -> list[str]:
        async with db() as s:
            return list((await s.scalars(select(Keyword.keyword_norm).where(Keyword.site_id == site))).all())

    # behind the three unusable records, on the same partition: imported
    assert sorted(await eventually(imported, timeout=120)) == ["espresso grinder", "milk frother"]

    offsets = {str(m.offset) for m in sent[:3]}

    def ours(r: Any) -> bool:
        headers = dict(r.headers)
        return (
            headers.get(SOURCE_PARTITION_HEADER) == b"0" and headers.get(SOURCE_OFFSET_HEADER, b"").decode() in offsets
        )

    async def all_parked() -> list[Any] | None:
        got = await read_topic(stack.kafka_bootstrap, KEYWORDS_INGEST_DLQ, ours, idle_seconds=0.5)
        return got if len(got) >= 3 else None

    parked = await eventually(all_parked, timeout=30)
    by_offset = {int(dict(r.headers)[SOURCE_OFFSET_HEADER]): r for r in parked}
    assert sorted(by_offset) == [m.offset for m in sent[:3]]  # each exactly once

    big = by_offset[sent[0].offset]
    headers = {k: v.decode() for k, v in big.headers}
    assert "invalid message: keywords" in headers[DLQ_REASON_HEADER]
    assert headers[ORIGINAL_SIZE_HEADER] == str(len(huge))
    assert headers[ORIGINAL_SHA256_HEADER] == hashlib.sha256(huge).hexdigest()
    assert headers[ENCODING_HEADER] == "gzip" and len(big.value) < 1024 * 1024
    assert huge.startswith(gzip.decompress(big.value))  # whole, or its start when marked truncated
    assert big.key == site.encode()

    assert by_offset[sent[1].offset].value == garbage
    assert "invalid message" in dict(by_offset[sent[1].offset].headers)[DLQ_REASON_HEADER].decode()
    wrong = dict(by_offset[sent[2].offset].headers)[DLQ_REASON_HEADER].decode()
    assert "invalid message" in wrong and "site_id" in wrong and "keywords" in wrong

    async with db() as s:  # settled within the bounded attempts: no count left behind
        left = (
            await s.scalars(
                select(DeliveryAttempt).where(
                    DeliveryAttempt.consumer == INGEST_CONSUMER,
                    DeliveryAttempt.message_id.in_([f"record:0:{m.offset}" for m in sent[:3]]),
                )
            )
        ).all()
    assert left == []


async def test_a_dead_letter_the_broker_refuses_counts_and_is_given_up_after_the_limit(
    stack: Stack,
    db: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consume, "INFRA_BACKOFF_SECONDS", 0.0)
    # A real producer whose request limit no dead letter fits: every send is refused like the 1 MiB case was.
    broker = KafkaBroker(stack.kafka_bootstrap, max_request_size=200)
    await broker.connect()
    name = f"test-dlq-{uuid.uuid4().hex[:8]}"
    record = Record(KEYWORDS_INGEST, 0, random.randrange(10**12), b"k", b"\x00garbage" * 100)
    try:
        for attempt in range(1, MAX_ATTEMPTS):
            with pytest.raises(MessageSizeTooLargeError):  # counted, then handed back for another delivery
                await parse_record(broker, db, name, record, KeywordBatchIngested, KEYWORDS_INGEST_DLQ)
            async with db() as s:
                [row] = (await s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.consumer == name))).all()
            assert row.attempts == attempt and "MessageSizeTooLargeError" in (row.last_error or "")
        with caplog.at_level(logging.ERROR, logger="shared.consume"):
            assert await parse_record(broker, db, name, record, KeywordBatchIngested, KEYWORDS_INGEST_DLQ) is None
    finally:
        await broker.stop()
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert hashlib.sha256(record.value).hexdigest() in dropped[0] and "MessageSizeTooLargeError" in dropped[0]
    assert "invalid message" in dropped[0]
    async with db() as s:
        assert (await s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.consumer == name))).all() == []
