"""Issue 13, the orchestrator's side: results that arrive together are applied together, in one transaction per
run, with each record still on its own for idempotency and dead-lettering."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import ResultStatus, StageResult, Usage
from shared.db.models import ActivityLog, CreditLedger, Idea, InboxMessage, StageBatch
from shared.topics import RESULTS_DLQ, STAGE_RESULTS
from tests.helpers import (
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    read_topic,
    start_run,
    wait_run,
)


async def released(db: async_sessionmaker[AsyncSession], run_id: str, stage_no: int) -> list[StageBatch]:
    async with db() as s:
        rows = await s.scalars(
            select(StageBatch)
            .where(StageBatch.run_id == run_id, StageBatch.stage == stage_no, StageBatch.status == "released")
            .order_by(StageBatch.seq)
        )
        return list(rows.all())


async def make_ideas(db: async_sessionmaker[AsyncSession], site: str, batches: list[StageBatch]) -> None:
    """What the ideator would have written: a result is recorded only for output the database holds."""
    async with db.begin() as s:
        for b in batches:
            for cluster_id in b.item_ids:
                s.add(
                    Idea(
                        site_id=site, cluster_id=int(cluster_id), run_id=b.run_id, seq=1, title="t",
                        content_type="guide", intent="informational", primary_keyword="k", target_words=900, brief="b",
                    )
                )  # fmt: skip


def result_for(batch: StageBatch, account_id: str, site: str) -> StageResult:
    return StageResult(
        command_id=batch.id,
        account_id=account_id,
        site_id=site,
        run_id=batch.run_id,
        stage=batch.stage,
        batch_seq=batch.seq,
        status=ResultStatus.OK,
        items_in=len(batch.item_ids),
        items_processed=len(batch.item_ids),
        items_created=len(batch.item_ids),
        usage=Usage(model_calls=1, prompt_tokens=500, completion_tokens=500, clusters_ideated=len(batch.item_ids)),
        worker="test",
    )


async def test_results_that_arrive_together_are_applied_in_one_transaction_each_record_on_its_own(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(4, 3))
    configure(api, site, stage_enabled={"3": False, "4": False, "5": False, "6": False})
    stack.stop_service("ideator")  # stage-2 commands wait on their topic; this test answers them itself
    try:
        run = start_run(api, site)
        batches = await eventually(lambda: released(db, run["run_id"], 2), timeout=120)
        assert len(batches) >= 2
        account_id = api.get("/me").json()["account_id"]
        await make_ideas(db, site, batches)
        answers = [result_for(b, account_id, site) for b in batches]
        unknown = answers[0].model_copy(update={"message_id": uuid.uuid4().hex, "command_id": "no-such-command"})
        replay = answers[0].model_copy(update={"message_id": uuid.uuid4().hex})  # the same command, a new record
        garbage = f"not a result {uuid.uuid4().hex}".encode()
        # One produce request: the broker appends them as one record batch, the orchestrator fetches them at once.
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=200)
        await producer.start()
        try:
            sent = [
                await producer.send(STAGE_RESULTS, m.model_dump_json().encode(), key=site.encode())
                # answers[0] twice: a duplicate inside the group; the replay is recorded once the first was applied
                for m in [*answers, answers[0], replay, unknown]
            ]
            sent.append(await producer.send(STAGE_RESULTS, garbage, key=site.encode()))
            for future in sent:
                await future
        finally:
            await producer.stop()

        async def recorded() -> list[InboxMessage] | None:
            async with db() as s:
                rows = (
                    await s.scalars(
                        select(InboxMessage).where(
                            InboxMessage.consumer == "orchestrator.results",
                            InboxMessage.message_id.in_([a.message_id for a in [*answers, replay]]),
                        )
                    )
                ).all()
            return list(rows) if len(rows) == len(answers) + 1 else None

        rows = await eventually(recorded, timeout=60)
        # One transaction (now() is the transaction's start) recorded every result of the group.
        assert len({r.processed_at for r in rows}) == 1, [r.processed_at for r in rows]
        async with db() as s:  # claimed without a result: SQL NULL, as one claim at a time left it (not JSON null)
            sql_null = await s.scalar(
                select(func.count())
                .select_from(InboxMessage)
                .where(
                    InboxMessage.consumer == "orchestrator.results",
                    InboxMessage.message_id.in_([r.message_id for r in rows]),
                    InboxMessage.result.is_(None),
                )
            )
        assert sql_null == len(rows)
        parked = await eventually(
            lambda: read_topic(
                stack.kafka_bootstrap,
                RESULTS_DLQ,
                lambda r: unknown.message_id.encode() in r.value or r.value == garbage,
                idle_seconds=0.5,
            ),
            timeout=60,
        )
        assert len(parked) == 2  # the unknown command and the unparsable record, each alone
        async with db() as s:
            for b in batches:
                assert (await s.get(StageBatch, b.id)).status == "done"  # type: ignore[union-attr]
                n = await s.scalar(
                    select(func.count())
                    .select_from(CreditLedger)
                    .where(CreditLedger.idempotency_key == f"debit:{b.id}")
                )
                assert n == 1  # the replay of answers[0] charged nothing
            lines = await s.scalars(select(ActivityLog.message).where(ActivityLog.run_id == run["run_id"]))
            assert f"result for batch {batches[0].seq} arrived while it was done" in lines.all()
    finally:
        stack.start_service("ideator")
    # The ideator answers the rest (and the commands answered above: "arrived while it was done", no charge).
    view = wait_run(api, run["run_id"], timeout=180)
    assert view["status"] == "completed"
    s2 = next(s for s in view["stages"] if s["stage"] == 2)
    assert s2["batches_done"] == s2["batches_total"] and s2["items_failed"] == 0
    assert Decimal(view["total_credits_used"]) == sum(Decimal(s["credits"]) for s in view["stages"])
