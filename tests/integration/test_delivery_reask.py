"""A command asked again (same command id) is answered from what the worker stored: the same result
message, no model call (issue 12, worker side). A duplicate that arrives while the first delivery is still
being worked waits for it instead of running the work a second time."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import Stage, StageCommand, StageResult
from shared.db.models import AiCall, Cluster, InboxMessage, Keyword
from shared.topics import CLUSTER_COMMANDS, IDEATE_COMMANDS, STAGE_RESULTS
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    publish,
    read_topic,
    slow_provider,
    start_run,
    wait_run,
)


async def results_for(stack: Stack, command_id: str, at_least: int = 1) -> list[StageResult] | None:
    records = await read_topic(
        stack.kafka_bootstrap, STAGE_RESULTS, lambda r: command_id.encode() in r.value, idle_seconds=0.5
    )
    found = [StageResult.model_validate_json(r.value) for r in records]
    return found if len(found) >= at_least else None


async def clustered_site(api: httpx.Client, n_topics: int) -> str:
    site = create_site(api)
    import_keywords(api, site, keyword_set(n_topics, 3))
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    assert wait_run(api, start_run(api, site)["run_id"])["status"] == "completed"
    return site


async def test_a_command_asked_again_gets_the_same_result_without_a_model_call(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 4))
    async with db() as s:
        ids = list((await s.scalars(select(Keyword.id).where(Keyword.site_id == site).order_by(Keyword.id))).all())
    cmd = StageCommand(
        account_id="default", site_id=site, run_id="run_test_reask", stage=Stage.CLUSTER, batch_seq=0, item_ids=ids
    )
    body = cmd.model_dump_json().encode()
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, body, key=site.encode())
    [first] = await eventually(lambda: results_for(stack, cmd.message_id), timeout=60)
    calls_before = fake.get("/stats").json()

    # The orchestrator's silence timeout re-sends the very same command (same id) later on.
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, body, key=site.encode())
    answers = await eventually(lambda: results_for(stack, cmd.message_id, at_least=2), timeout=60)
    assert len(answers) == 2
    assert answers[1].message_id == first.message_id and answers[1] == first  # the same message, re-published
    calls_after = fake.get("/stats").json()
    assert (calls_after["chat"], calls_after["embeddings"]) == (calls_before["chat"], calls_before["embeddings"])
    async with db() as s:
        assert (
            await s.scalar(
                select(func.count()).select_from(InboxMessage).where(InboxMessage.message_id == cmd.message_id)
            )
            == 1
        )
        stored = await s.scalar(select(InboxMessage.result).where(InboxMessage.message_id == cmd.message_id))
    assert stored is not None and StageResult.model_validate(stored) == first


async def test_a_duplicate_arriving_mid_work_waits_and_gets_the_same_answer(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = await clustered_site(api, 3)
    async with db() as s:
        clusters = list((await s.scalars(select(Cluster.id).where(Cluster.site_id == site))).all())
    assert len(clusters) >= 2
    cmd = StageCommand(
        account_id="default", site_id=site, run_id="run_test_dup", stage=Stage.IDEATE, batch_seq=0, item_ids=clusters
    )
    body = cmd.model_dump_json().encode()
    before = fake.get("/stats").json()["chat"]
    slow_provider(fake, 1500)  # the first delivery is still waiting for the model when the second arrives
    try:
        await publish(stack.kafka_bootstrap, IDEATE_COMMANDS, body, key=site.encode())
        await eventually(lambda: fake.get("/stats").json()["chat"] - before >= len(clusters), timeout=30)
        await publish(stack.kafka_bootstrap, IDEATE_COMMANDS, body, key=site.encode())
        answers = await eventually(lambda: results_for(stack, cmd.message_id, at_least=2), timeout=60)
    finally:
        slow_provider(fake, 0)
    await asyncio.sleep(1)
    assert len(await results_for(stack, cmd.message_id) or []) == 2
    assert answers[0] == answers[1] and not answers[0].failures
    assert fake.get("/stats").json()["chat"] - before == len(clusters)  # one idea call per cluster, once
    async with db() as s:
        calls = await s.scalar(select(func.count()).select_from(AiCall).where(AiCall.command_id == cmd.message_id))
    assert calls == len(clusters)
