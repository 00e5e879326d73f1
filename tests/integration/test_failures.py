"""Failure paths on the real stack: a stage whose results never come, and one image that keeps failing."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import Stage, StageCommand, StageResult
from shared.db.models import Cluster, CreditLedger, Idea, Image, ImagePrompt, StageBatch, WriterTask
from shared.topics import COMMANDS_DLQ, STAGE_RESULTS, WRITE_COMMANDS
from tests.helpers import (
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    publish,
    read_topic,
    stage,
    start_run,
    wait_run,
)


def restart_orchestrator(stack: Stack, **env: str | None) -> None:
    for key, value in env.items():
        if value is None:
            stack.extra_env.pop(key, None)
        else:
            stack.extra_env[key] = value
    stack.stop_service("orchestrator")
    stack.start_service("orchestrator")


async def test_missing_results_hit_the_stage_deadline_and_the_run_fails_visibly(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 3))
    configure(api, site, stage_enabled={"6": False})
    stack.stop_service("imager")  # stage 5 commands will wait on the topic, unanswered
    restart_orchestrator(stack, CONTENTLINE_STAGE_DEADLINE_SECONDS="4")
    try:
        view = wait_run(api, start_run(api, site)["run_id"], timeout=180)
        assert view["status"] == "failed" and view["current_stage"] == 5
        assert "no result within the stage deadline (4s)" in view["error_message"]
        s5 = stage(view, 5)
        assert s5["status"] == "failed" and s5["items_failed"] == s5["items_in"] > 0
        assert api.post(f"/sites/{site}/runs").status_code in (201, 402)  # the site is free again
        active = api.get(f"/sites/{site}/runs/current").json()
        if active:
            api.post(f"/runs/{active['run_id']}/cancel")
    finally:
        restart_orchestrator(stack, CONTENTLINE_STAGE_DEADLINE_SECONDS=None)
        stack.start_service("imager")

    # The imager comes back and answers the old commands: the late results are accepted and charged once;
    # the items they report move from failed to processed (one truth per item), the run stays failed.
    run_id = view["run_id"]

    async def late_debits() -> int:
        async with db() as s:
            ids = (
                await s.scalars(select(StageBatch.id).where(StageBatch.run_id == run_id, StageBatch.stage == 5))
            ).all()
            n = await s.scalar(
                select(func.count())
                .select_from(CreditLedger)
                .where(CreditLedger.idempotency_key.in_([f"debit:{i}" for i in ids]))
            )
            return int(n or 0) if int(n or 0) == len(ids) else 0

    await eventually(late_debits, timeout=90)
    after = api.get(f"/runs/{run_id}").json()
    assert after["status"] == "failed"
    assert stage(after, 5)["items_processed"] == s5["items_in"] and stage(after, 5)["items_failed"] == 0
    assert Decimal(after["total_credits_used"]) > Decimal(view["total_credits_used"])
    assert Decimal(stage(after, 5)["credits"]) == Decimal(after["total_credits_used"]) - sum(
        Decimal(s["credits"]) for s in after["stages"] if s["stage"] != 5
    )
    log = api.get(f"/runs/{run_id}/activity", params={"stage": 5}).json()
    assert any("past the stage deadline: accepted" in line["message"] for line in log)


async def test_one_failing_image_does_not_fail_its_draft_or_the_stage(
    api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 4))
    configure(api, site, stage_enabled={"6": False})
    first = wait_run(api, start_run(api, site)["run_id"])
    assert first["status"] == "completed"
    async with db() as s:
        prompts = (
            await s.scalars(select(ImagePrompt).where(ImagePrompt.site_id == site).order_by(ImagePrompt.id))
        ).all()
    assert len(prompts) >= 3
    # a word that appears in exactly one image prompt: that prompt's image fails on every attempt
    words = {w for p in prompts for w in re.findall(r"[a-z]{6,}", p.prompt.lower())}
    marker, target = next(
        (w, p)
        for w in sorted(words)
        for p in prompts
        if w in p.prompt.lower() and sum(w in q.prompt.lower() for q in prompts) == 1
    )
    assert fake.post("/config", json={"error_if_prompt_contains": marker}).status_code == 200
    try:
        configure(api, site, stage_enabled={"6": True})
        view = wait_run(api, start_run(api, site)["run_id"], timeout=180)
    finally:
        fake.post("/config", json={"error_if_prompt_contains": None})
    s6 = stage(view, 6)
    assert view["status"] == "completed" and s6["status"] == "completed" and s6["partial"]
    assert s6["items_failed"] == 1 and s6["items_processed"] == len(prompts) - 1
    (failure,) = s6["failures"]
    assert failure["item_id"] == target.id and "after 4 attempts" in failure["reason"]
    async with db() as s:
        images = set((await s.scalars(select(Image.prompt_id).where(Image.site_id == site))).all())
    assert images == {p.id for p in prompts} - {target.id}
    # the other images of that draft are there; the draft waits for its last image, the rest are in review
    queue = {item["draft_id"] for item in api.get(f"/sites/{site}/review-queue").json()}
    assert target.draft_id not in queue and len(queue) == len({p.draft_id for p in prompts}) - 1


async def test_a_command_that_keeps_crashing_the_worker_is_reported_failed_and_the_partition_moves_on(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    async with db.begin() as s:  # a corrupt writer task: its brief lacks everything the writer needs
        cluster = Cluster(
            site_id=site,
            name="corrupt",
            name_norm="corrupt",
            description="",
            intent="informational",
            centroid=b"\x00" * 16,
            size=0,
        )
        s.add(cluster)
        await s.flush()
        idea = Idea(
            site_id=site,
            cluster_id=cluster.id,
            seq=0,
            title="t",
            content_type="guide",
            intent="informational",
            primary_keyword="k",
            secondary_keywords=[],
            outline=[],
            target_words=500,
            brief="b",
        )
        s.add(idea)
        await s.flush()
        task = WriterTask(site_id=site, idea_id=idea.id, title="t", brief={"unexpected": True})
        s.add(task)
    bad = StageCommand(
        account_id="default",
        site_id=site,
        run_id="run_test_poison",
        stage=Stage.DRAFTS,
        batch_seq=0,
        item_ids=[task.id],
    )
    # queued right behind it on the same partition (same key): a stage-3 command for the same idea
    behind = StageCommand(
        account_id="default", site_id=site, run_id="run_test_poison", stage=Stage.TASKS, batch_seq=1, item_ids=[idea.id]
    )
    await publish(stack.kafka_bootstrap, WRITE_COMMANDS, bad.model_dump_json().encode(), key=site.encode())
    await publish(stack.kafka_bootstrap, WRITE_COMMANDS, behind.model_dump_json().encode(), key=site.encode())

    async def result() -> list[StageResult]:
        records = await read_topic(
            stack.kafka_bootstrap, STAGE_RESULTS, lambda r: bad.message_id.encode() in r.value, idle_seconds=0.5
        )
        return [StageResult.model_validate_json(r.value) for r in records]

    (reported,) = await eventually(result, timeout=90)
    assert reported.status == "failed" and reported.items_processed == 0
    (failure,) = reported.failures
    assert failure.item_id == task.id and "worker error: failed 5 times: KeyError" in failure.reason
    parked = await read_topic(stack.kafka_bootstrap, COMMANDS_DLQ, lambda r: bad.message_id.encode() in r.value)
    assert parked  # the failed items are on the dead-letter topic too
    records = await eventually(
        lambda: read_topic(
            stack.kafka_bootstrap, STAGE_RESULTS, lambda r: behind.message_id.encode() in r.value, idle_seconds=0.5
        )
    )
    after = StageResult.model_validate_json(records[0].value)
    assert after.items_skipped == 1 and not after.failures  # processed after the poisonous one (task existed)
