"""At-least-once in, exactly-once in effect: duplicate commands, redelivered items, bad messages."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import KeywordBatchIngested, KeywordIn, Stage, StageCommand, StageResult
from shared.db.models import ActivityLog, AiCall, Cluster, Keyword, Run
from shared.topics import (
    CLUSTER_COMMANDS,
    COMMANDS_DLQ,
    DLQ_REASON_HEADER,
    KEYWORDS_INGEST,
    KEYWORDS_INGEST_DLQ,
    STAGE_RESULTS,
)
from tests.helpers import (
    Tenant,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    publish,
    read_topic,
    wait_run,
)


async def site_keyword_ids(db: async_sessionmaker[AsyncSession], site: str) -> list[int]:
    async with db() as s:
        return list((await s.scalars(select(Keyword.id).where(Keyword.site_id == site).order_by(Keyword.id))).all())


async def results_for(stack: Stack, command_id: str) -> list[StageResult]:
    records = await read_topic(
        stack.kafka_bootstrap, STAGE_RESULTS, lambda r: command_id.encode() in r.value, idle_seconds=0.5
    )
    return [StageResult.model_validate_json(r.value) for r in records]


def calls_mentioning(fake: httpx.Client, marker: str) -> Counter[str]:
    """Model calls per endpoint in the fake's request log whose body mentions `marker`."""
    log = fake.get("/requests").json()
    return Counter(r["endpoint"] for r in log if marker in json.dumps(r["body"]))


async def test_same_command_twice_is_processed_once(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    # A word no other test uses, in every keyword: the fake's request log is shared with whatever else the stack
    # is doing, so the model calls are counted as the ones that mention it.
    marker = f"idem{uuid.uuid4().hex[:8]}"
    import_keywords(api, site, [{**k, "keyword": f"{k['keyword']} {marker}"} for k in keyword_set(3, 5)])
    ids = await site_keyword_ids(db, site)
    cmd = StageCommand(
        account_id="default", site_id=site, run_id="run_test_duplicate", stage=Stage.CLUSTER, batch_seq=0, item_ids=ids
    )
    body = cmd.model_dump_json().encode()
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, body, key=site.encode())
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, body, key=site.encode())

    await eventually(lambda: results_for(stack, cmd.message_id), timeout=60)
    await asyncio.sleep(3)  # room for the duplicate to be consumed (it is, right behind the first)
    results = await results_for(stack, cmd.message_id)
    # the duplicate is answered from what the worker stored: the same result message once more, no new work
    assert len(results) == 2 and results[0] == results[1]
    result = results[0]
    assert result.items_in == len(ids) and result.items_processed == len(ids) and not result.failures

    after = calls_mentioning(fake, marker)
    async with db() as s:
        clusters = (await s.scalars(select(Cluster).where(Cluster.site_id == site))).all()
        assigned = await s.scalar(
            select(func.count()).select_from(Keyword).where(Keyword.site_id == site, Keyword.cluster_id.is_not(None))
        )
        calls = (await s.scalars(select(AiCall).where(AiCall.command_id == cmd.message_id))).all()
    assert assigned == len(ids)
    assert len(clusters) == result.items_created
    assert sum(c.size for c in clusters) == len(ids)  # no keyword counted twice
    assert len({c.name_norm for c in clusters}) == len(clusters)
    # one naming call per new cluster plus one embeddings call: exactly what the single processing made
    assert after["chat"] == len(clusters) == sum(c.kind == "chat" for c in calls)
    assert after["embeddings"] == 1 == sum(c.kind == "embeddings" for c in calls)

    # A new command (new id) for the same, finished items: no model call, items reported as skipped.
    again = StageCommand(
        account_id="default", site_id=site, run_id="run_test_duplicate", stage=Stage.CLUSTER, batch_seq=1, item_ids=ids
    )
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, again.model_dump_json().encode(), key=site.encode())
    replay = (await eventually(lambda: results_for(stack, again.message_id), timeout=60))[0]
    assert replay.items_skipped == len(ids) and replay.items_processed == 0 and replay.usage.model_calls == 0
    assert calls_mentioning(fake, marker) == after


async def test_malformed_command_goes_to_dead_letter_and_consumer_moves_on(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    marker = b'{"broken": "command-for-dlq-test", "stage": 1}'
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, marker, key=b"x")
    site = create_site(api)
    import_keywords(api, site, keyword_set(1, 3))
    ids = await site_keyword_ids(db, site)
    good = StageCommand(
        account_id="default", site_id=site, run_id="run_test_dlq", stage=Stage.CLUSTER, batch_seq=0, item_ids=ids
    )
    await publish(stack.kafka_bootstrap, CLUSTER_COMMANDS, good.model_dump_json().encode(), key=b"x")
    await eventually(lambda: results_for(stack, good.message_id), timeout=60)  # the consumer moved on
    parked = await read_topic(stack.kafka_bootstrap, COMMANDS_DLQ, lambda r: r.value == marker)
    assert len(parked) == 1
    reason = dict(parked[0].headers)[DLQ_REASON_HEADER].decode()
    assert "invalid message" in reason and "site_id" in reason


async def test_keyword_ingest_topic_imports_and_dead_letters_bad_batches(
    stack: Stack, api: httpx.Client, tenant: Tenant, other_tenant: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    batch = KeywordBatchIngested(
        account_id=tenant.account_id,
        site_id=site,
        source="planner-sync",
        keywords=[
            KeywordIn(keyword="Espresso Machine"),
            KeywordIn(keyword="espresso  machine"),
            KeywordIn(keyword="milk frother", volume=900),
        ],
    )
    bad_json = b"{not json"
    unknown_site = KeywordBatchIngested(
        account_id=tenant.account_id, site_id="no-such-site", keywords=[KeywordIn(keyword="x")]
    )
    # A producer naming another account cannot put keywords into this account's site.
    foreign = KeywordBatchIngested(
        account_id=other_tenant.get("/me").json()["account_id"], site_id=site, keywords=[KeywordIn(keyword="spam")]
    )
    no_account = batch.model_dump(mode="json")
    no_account.pop("account_id")
    no_account["message_id"] = "no-account-0001"
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, bad_json)
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, unknown_site.model_dump_json().encode())
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, foreign.model_dump_json().encode(), key=site.encode())
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, json.dumps(no_account).encode(), key=site.encode())
    for _ in range(2):  # the same message twice: imported once
        await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, batch.model_dump_json().encode(), key=site.encode())

    async def imported() -> list[str]:
        async with db() as s:
            return list((await s.scalars(select(Keyword.keyword_norm).where(Keyword.site_id == site))).all())

    assert sorted(await eventually(imported, timeout=60)) == ["espresso machine", "milk frother"]

    async def both_parked() -> list[Any] | None:  # handled one after the other: wait for all four
        got = await read_topic(
            stack.kafka_bootstrap,
            KEYWORDS_INGEST_DLQ,
            lambda r: r.value == bad_json
            or any(m.encode() in r.value for m in (unknown_site.message_id, foreign.message_id, "no-account-0001")),
        )
        return got if len(got) >= 4 else None

    parked = await eventually(both_parked, timeout=30)
    reasons = sorted(dict(r.headers)[DLQ_REASON_HEADER].decode() for r in parked)
    assert len(reasons) == 4, reasons
    assert any("invalid message" in r and "account_id" in r for r in reasons)
    assert any("no-such-site" in r and "does not exist" in r for r in reasons)
    assert any(f"is not a site of account {foreign.account_id!r}" in r for r in reasons)


async def test_ingest_event_can_start_a_run_and_a_refusal_is_logged(
    stack: Stack, api: httpx.Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    configure(api, site, stage_enabled={"2": False, "3": False, "4": False, "5": False, "6": False})
    first = KeywordBatchIngested(
        account_id=tenant.account_id, site_id=site, start_run=True, keywords=[KeywordIn(keyword="tea kettle")]
    )
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, first.model_dump_json().encode(), key=site.encode())

    async def event_run() -> Run | None:
        async with db() as s:
            return await s.scalar(select(Run).where(Run.site_id == site, Run.trigger == "event"))

    run = await eventually(event_run, timeout=60)
    assert "_event_" in run.id
    done = wait_run(api, run.id)
    assert done["status"] == "completed" and done["stages"][0]["items_processed"] == 1

    # a second event while a run is paused: keywords are imported, the run is refused and the reason logged
    configure(api, site, delay_between_batches_seconds=30)
    import_keywords(api, site, [{"keyword": "green tea"}, {"keyword": "oolong tea"}])
    configure(api, site, batch_sizes={"1": 1})
    held = api.post(f"/sites/{site}/runs").json()["run_id"]
    assert api.post(f"/runs/{held}/pause").status_code == 200
    second = KeywordBatchIngested(
        account_id=tenant.account_id, site_id=site, start_run=True, keywords=[KeywordIn(keyword="matcha")]
    )
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, second.model_dump_json().encode(), key=site.encode())

    async def refusal() -> str | None:
        async with db() as s:
            return await s.scalar(
                select(ActivityLog.message).where(
                    ActivityLog.site_id == site, ActivityLog.message.like("event run not started%")
                )
            )

    assert f"run {held} is paused" in await eventually(refusal, timeout=60)
    async with db() as s:
        assert await s.scalar(select(func.count()).select_from(Run).where(Run.site_id == site)) == 2
        assert await s.scalar(select(Keyword.id).where(Keyword.site_id == site, Keyword.keyword_norm == "matcha"))
    api.post(f"/runs/{held}/cancel")
