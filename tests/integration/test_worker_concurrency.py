"""A worker works on several commands of one site at once (they share one partition), and a worker
killed (SIGKILL) with several of them in flight loses none and repeats only the unfinished ones."""

from __future__ import annotations

import asyncio

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import Stage, StageCommand, StageResult
from shared.db.models import AiCall, Cluster, InboxMessage
from shared.topics import IDEATE_COMMANDS, STAGE_RESULTS
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    read_topic,
    slow_provider,
    start_run,
    wait_run,
)

GROUP = "contentline-ideator"


async def send_all(bootstrap: str, commands: list[StageCommand]) -> list[tuple[int, int]]:
    """Publish keyed by site, as the orchestrator does today: one partition. Returns (partition, offset)s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(IDEATE_COMMANDS, c.model_dump_json().encode(), key=c.site_id.encode())
            for c in commands
        ]
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in sent]


async def committed(bootstrap: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    mine = [m.offset for tp, m in offsets.items() if tp.topic == IDEATE_COMMANDS and tp.partition == partition]
    return mine[0] if mine else -1


async def results(stack: Stack, run_id: str, at_least: int = 0) -> list[StageResult] | None:
    records = await read_topic(stack.kafka_bootstrap, STAGE_RESULTS, lambda r: run_id.encode() in r.value, 0.5)
    found = [StageResult.model_validate_json(r.value) for r in records]
    return found if len(found) >= at_least else None


async def test_a_killed_worker_loses_no_command_and_repeats_only_the_unfinished(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(8, 2))
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    assert wait_run(api, start_run(api, site)["run_id"])["status"] == "completed"
    async with db() as s:
        clusters = sorted((await s.scalars(select(Cluster.id).where(Cluster.site_id == site))).all())
    assert len(clusters) >= 8
    run_id = f"run_test_kill_{site}"
    commands = [
        StageCommand(
            account_id="default", site_id=site, run_id=run_id, stage=Stage.IDEATE, batch_seq=i, item_ids=[cluster]
        )
        for i, cluster in enumerate(clusters[:8])
    ]
    finished, in_flight = commands[:3], commands[3:]

    def chat() -> int:
        return int(fake.get("/stats").json()["chat"])

    start = chat()
    try:
        slow_provider(fake, 100)
        [(partition, _), *_] = sent = await send_all(stack.kafka_bootstrap, finished)
        await eventually(lambda: results(stack, run_id, at_least=3), timeout=60)
        last = max(o for _, o in sent)

        async def finished_committed() -> bool:
            return await committed(stack.kafka_bootstrap, partition) > last

        await eventually(finished_committed, timeout=30)

        slow_provider(fake, 20_000)  # these stay in flight until the worker is killed
        assert {p for p, _ in await send_all(stack.kafka_bootstrap, in_flight)} == {partition}
        # all five of one partition are with the model at once: the worker does not take them one by one
        await eventually(lambda: chat() - start == 3 + 5, timeout=30)
        assert len(await results(stack, run_id) or []) == 3
        stack.kill_service("ideator")
        slow_provider(fake, 100)
        stack.start_service("ideator")
        await eventually(lambda: results(stack, run_id, at_least=8), timeout=120)
    finally:
        slow_provider(fake, 0)
        if "ideator" not in stack.procs:
            stack.start_service("ideator")
    await asyncio.sleep(1.5)  # room for anything repeated by mistake to show up

    got = await results(stack, run_id) or []
    per_command = {c.message_id: [r for r in got if r.command_id == c.message_id] for c in commands}
    assert all(len(rs) == 1 for rs in per_command.values()), {k: len(v) for k, v in per_command.items()}
    assert all(rs[0].items_processed == 1 and not rs[0].failures for rs in per_command.values())
    # the three finished before the kill were not repeated; the five in flight were, once each
    assert chat() - start == 3 + 5 + 5
    ids = [c.message_id for c in commands]
    async with db() as s:
        per_call = select(AiCall.command_id, func.count()).where(AiCall.command_id.in_(ids))
        calls = dict((await s.execute(per_call.group_by(AiCall.command_id))).all())
        answered = InboxMessage.result.is_not(None)
        inbox = await s.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(InboxMessage.consumer == "ideator", InboxMessage.message_id.in_(ids), answered)
        )
    assert calls == dict.fromkeys(ids, 1)  # committed usage: one call per command, none lost, none twice
    assert inbox == 8
