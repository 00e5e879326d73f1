"""An outbox row the broker refuses for good is parked with the reason instead of blocking its producer;
an operator lists it and hands it back through the API. Nothing is deleted on the way."""

from __future__ import annotations

import uuid

import httpx
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import OutboxMessage
from shared.kafka import PARK_AFTER_ATTEMPTS, OutboxRelay, ensure_topics, make_broker, refused_for_good
from tests.helpers import read_topic


@pytest.mark.parametrize(
    ("error", "for_good"),
    [
        (MessageSizeTooLargeError(), True),
        (TopicAuthorizationFailedError(), True),
        (TypeError("not serialisable"), True),
        (KafkaConnectionError(), False),
        (KafkaTimeoutError(), False),  # aiokafka's metadata wait while the broker is down
        (RequestTimedOutError(), False),
        (NotLeaderForPartitionError(), False),
        (OSError("connection reset"), False),
    ],
)
def test_an_outage_never_counts_as_a_refusal(error: BaseException, for_good: bool) -> None:
    assert refused_for_good(error) is for_good


async def test_refused_row_is_parked_and_the_rows_behind_it_still_go_out(
    stack: Stack, operator: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    producer, topic = f"parking-{uuid.uuid4().hex[:8]}", f"contentline.test.parking.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, 1, [topic])

    def row(payload: dict[str, str]) -> OutboxMessage:
        return OutboxMessage(producer=producer, topic=topic, key="site-1", message_id=uuid.uuid4().hex, payload=payload)

    # 2 MB is over both the producer's request limit and the broker's default message.max.bytes.
    before, too_large, after = row({"n": "1"}), row({"blob": "x" * 2_000_000}), row({"n": "3"})
    async with db.begin() as s:
        s.add(before)
        await s.flush()
        s.add(too_large)
        await s.flush()
        s.add(after)
    broker = make_broker(stack.kafka_bootstrap, "parking-test")
    await broker.connect()
    try:
        relay = OutboxRelay(broker, db, producer=producer)
        assert await relay.relay_once() == 2  # the rows around the refused one are not held back
        for _ in range(PARK_AFTER_ATTEMPTS - 1):
            assert await relay.relay_once() == 0
        assert await relay.relay_once() == 0  # parked: not tried again
    finally:
        await broker.stop()

    sent = await read_topic(stack.kafka_bootstrap, topic)
    assert [dict(r.headers)["message_id"].decode() for r in sent] == [before.message_id, after.message_id]
    async with db() as s:
        parked = await s.get_one(OutboxMessage, too_large.id)
    assert parked.parked_at is not None and parked.published_at is None
    assert parked.send_attempts == PARK_AFTER_ATTEMPTS
    assert parked.last_error is not None and "MessageSizeTooLarge" in parked.last_error
    assert len(parked.payload["blob"]) == 2_000_000  # the payload is kept for the operator

    listed = {r["id"]: r for r in operator.get("/ops/outbox/parked", params={"limit": 1000}).json()}
    assert listed[too_large.id]["topic"] == topic and "MessageSizeTooLarge" in listed[too_large.id]["last_error"]
    assert before.id not in listed and after.id not in listed

    retried = operator.post(f"/ops/outbox/{too_large.id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["parked_at"] is None and retried.json()["send_attempts"] == 0
    assert operator.post(f"/ops/outbox/{too_large.id}/retry").status_code == 409  # back in the queue, not parked
    assert operator.post(f"/ops/outbox/{after.id}/retry").status_code == 409  # sent rows are not parked
    missing = operator.post("/ops/outbox/999999999999/retry")
    assert missing.status_code == 404 and "does not exist" in missing.text
    async with db() as s:
        again = await s.get_one(OutboxMessage, too_large.id)
    assert again.parked_at is None and again.published_at is None
    async with db.begin() as s:  # leave no row that a later relay of this producer name could pick up
        await s.delete(await s.get_one(OutboxMessage, too_large.id))
