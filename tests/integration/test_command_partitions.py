"""Stage commands go round the partitions by batch sequence on the real broker (issue 13): the producer every
service builds (`make_broker`) places spread keys by number and hashes every other key as before."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.stack import Stack
from shared.contracts import Stage, StageCommand
from shared.delivery import command_key
from shared.kafka import ensure_topics, make_broker


async def test_a_stages_batches_go_round_the_partitions_and_a_site_key_stays_on_one(stack: Stack) -> None:
    topic = f"contentline.test.spread.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.kafka_bootstrap, 6, [topic])
    broker = make_broker(stack.kafka_bootstrap, client_id="test-spread")
    await broker.start()
    try:
        commands = [
            StageCommand(account_id="a", site_id="site-1", run_id="r", stage=stage, batch_seq=seq, item_ids=[seq])
            for stage, seq in [*((Stage.DRAFTS, seq) for seq in range(12)), *((Stage.CLUSTER, seq) for seq in range(4))]
        ]
        for cmd in commands:
            await broker.publish(cmd.model_dump_json().encode(), topic=topic, key=command_key(cmd).encode())
    finally:
        await broker.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(6)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        placed: dict[int, int] = {}  # batch seq of a stage-4 command → partition; -1 - seq for stage 1
        while len(placed) < len(commands):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    cmd = StageCommand.model_validate_json(record.value or b"")
                    placed[cmd.batch_seq if cmd.stage is Stage.DRAFTS else -1 - cmd.batch_seq] = tp.partition
    finally:
        await consumer.stop()
    assert [placed[seq] for seq in range(12)] == [seq % 6 for seq in range(12)]
    assert len({placed[-1 - seq] for seq in range(4)}) == 1  # a site's clustering keeps to one partition
