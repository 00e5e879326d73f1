"""Issue 12, the orchestrator's side: a batch whose result does not come is asked again (same command id) after
a silence, the API says which batches are silent, and a batch past its deadline is failed forward (its output
is held back from the later stages of the run) while its late result is still accepted and charged once.

Results are lost on purpose with a trigger on the outbox: the worker commits its work and its inbox row (with
the answer it keeps for a command asked again), but the result event never leaves.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import AiCall, CreditLedger, Draft, ImagePrompt, StageBatch, WriterTask
from shared.topics import STAGE_RESULTS
from tests.helpers import configure, create_site, eventually, import_keywords, keyword_set, stage, start_run, wait_run

SILENCE = "2"


def restart_orchestrator(stack: Stack, **env: str | None) -> None:
    for key, value in env.items():
        if value is None:
            stack.extra_env.pop(key, None)
        else:
            stack.extra_env[key] = value
    stack.stop_service("orchestrator")
    stack.start_service("orchestrator")


@asynccontextmanager
async def on_result(
    engine: AsyncEngine, site: str, stage_no: int, seq: int, action: str, *, at_commit: bool = False
) -> AsyncIterator[None]:
    """Run `action` (PL/pgSQL) when a worker's outbox takes the result of `site`'s batch `seq` of stage
    `stage_no`: before the row goes in (the action may change NEW), or at the worker's commit (`at_commit`: a
    deferred trigger, after every row of that transaction is in)."""
    name = f"test_result_{uuid.uuid4().hex[:10]}"
    body = (
        f"IF NEW.topic = '{STAGE_RESULTS}' AND NEW.payload->>'site_id' = '{site}' "
        f"AND NEW.payload->>'stage' = '{stage_no}' AND NEW.payload->>'batch_seq' = '{seq}' THEN {action} END IF; "
        f"RETURN {'NULL' if at_commit else 'NEW'};"
    )
    trigger = (
        f"CREATE CONSTRAINT TRIGGER {name} AFTER INSERT ON outbox DEFERRABLE INITIALLY DEFERRED"
        if at_commit
        else f"CREATE TRIGGER {name} BEFORE INSERT ON outbox"
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$"))
        await conn.execute(text(f"{trigger} FOR EACH ROW EXECUTE FUNCTION {name}()"))
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON outbox"))
            await conn.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))


@asynccontextmanager
async def losing_results(engine: AsyncEngine, site: str, stage_no: int, seq: int, every: bool) -> AsyncIterator[None]:
    """Lose the result event of one batch in the worker's outbox (its first one only, or every one): the row
    goes in already marked sent, so the relay never sends it (the worker's transaction commits as usual)."""
    lose = "NEW.published_at := now();"
    drop = (
        lose
        if every
        else "INSERT INTO test_lost_results VALUES (NEW.message_id) ON CONFLICT DO NOTHING; "
        f"IF FOUND THEN {lose} END IF;"
    )
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS test_lost_results (message_id text PRIMARY KEY)"))
    async with on_result(engine, site, stage_no, seq, drop):
        yield


async def batch_of(db: async_sessionmaker[AsyncSession], run_id: str, stage_no: int, seq: int) -> StageBatch:
    async with db() as s:
        batch = await s.scalar(
            select(StageBatch).where(StageBatch.run_id == run_id, StageBatch.stage == stage_no, StageBatch.seq == seq)
        )
    assert batch is not None
    return batch


async def debits(db: async_sessionmaker[AsyncSession], command_id: str) -> int:
    async with db() as s:
        n = await s.scalar(
            select(func.count()).select_from(CreditLedger).where(CreditLedger.idempotency_key == f"debit:{command_id}")
        )
    return int(n or 0)


def activity(api: httpx.Client, run_id: str) -> list[str]:
    return [line["message"] for line in api.get(f"/runs/{run_id}/activity", params={"limit": 500}).json()]


async def test_a_lost_result_is_asked_for_again_and_the_run_completes_with_one_charge(
    stack: Stack, api: httpx.Client, engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(3, 3))
    configure(api, site, stage_enabled={"3": False, "4": False, "5": False, "6": False})
    restart_orchestrator(stack, CONTENTLINE_SILENCE_TIMEOUT_SECONDS=SILENCE)
    try:
        async with losing_results(engine, site, 2, 0, every=False):
            view = wait_run(api, start_run(api, site)["run_id"], timeout=180)
    finally:
        restart_orchestrator(stack, CONTENTLINE_SILENCE_TIMEOUT_SECONDS=None)
    run_id = view["run_id"]
    assert view["status"] == "completed", view
    s2 = stage(view, 2)
    assert s2["items_failed"] == 0 and s2["items_processed"] == s2["items_in"] >= 2
    assert view["liveness"]["silent"] is False and view["in_flight"] == []

    lost, other = await batch_of(db, run_id, 2, 0), await batch_of(db, run_id, 2, 1)
    assert lost.status == "done" and lost.attempt >= 2  # sent, then asked again with the same id
    reasks = [m for m in activity(api, run_id) if f"asked again with the same command id {lost.id}" in m]
    assert len(reasks) == lost.attempt - 1 >= 1
    assert await debits(db, lost.id) == 1
    async with db() as s:
        calls = dict(
            (
                await s.execute(
                    select(AiCall.command_id, func.count())
                    .where(AiCall.command_id.in_([lost.id, other.id]))
                    .group_by(AiCall.command_id)
                )
            ).all()
        )
    assert calls[lost.id] == calls[other.id]  # the worker answered from its inbox: no second model call
    charged = sum(Decimal(s["credits"]) for s in view["stages"])
    assert Decimal(view["total_credits_used"]) == charged


async def test_a_batch_past_its_deadline_is_failed_forward_and_its_late_result_charged_once(
    stack: Stack, api: httpx.Client, engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(3, 3))
    configure(api, site, stage_enabled={"6": False})
    restart_orchestrator(stack, CONTENTLINE_SILENCE_TIMEOUT_SECONDS=SILENCE, CONTENTLINE_STAGE_DEADLINE_SECONDS="30")
    try:
        async with losing_results(engine, site, 4, 0, every=True):
            run_id = start_run(api, site)["run_id"]

            def silent(view: dict[str, Any]) -> bool:
                return view["status"] != "running" or any(
                    b["stage"] == 4 and b["seq"] == 0 and b["reasks"] >= 1 for b in view["in_flight"]
                )

            seen = wait_run(api, run_id, until=silent, timeout=120)
            assert seen["status"] == "running", seen
            assert seen["liveness"]["silent"] is True and seen["liveness"]["reasks"] >= 1
            assert "stage 4 batch 0 has waited" in seen["liveness"]["reason"]
            processing = api.get(f"/sites/{site}/processing").json()
            assert processing["liveness"]["silent"] is True
            (held,) = [b for b in processing["batches"] if b["stage"] == 4 and b["seq"] == 0]
            assert held["reasks"] >= 1 and held["waiting_seconds"] > held["expected_within_seconds"] and held["items"]

            view = wait_run(api, run_id, timeout=120)
        assert view["status"] == "completed", view
        lost = await batch_of(db, run_id, 4, 0)
        (task_id,) = lost.item_ids
        async with db() as s:
            draft = await s.scalar(select(Draft).where(Draft.task_id == task_id))
            held_back = (
                await s.scalars(
                    select(StageBatch).where(
                        StageBatch.run_id == run_id, StageBatch.stage == 5, StageBatch.status == "failed"
                    )
                )
            ).all()
        assert draft is not None  # the writer did the work; only its result never arrived
        s4, s5 = stage(view, 4), stage(view, 5)
        assert s4["items_failed"] == 1 and any("stage deadline (30s)" in f["reason"] for f in s4["failures"])
        # the draft of the expired task is failed in stage 5 of this run, never worked on
        (hb,) = held_back
        assert hb.item_ids == [draft.id] and hb.released_at is None
        assert s5["items_failed"] == 1 and s5["items_processed"] == s5["items_in"] - 1 >= 1
        (failure,) = [f for f in s5["failures"] if f["item_id"] == draft.id]
        assert "made from stage 4 batch 0, which failed in this run" in failure["reason"]
        assert await debits(db, lost.id) == 0

        # The result path heals: the orchestrator keeps asking for the failed batch's result (also after the
        # run ended) and accepts it late: charged once, the task processed, the draft waiting for the next run.
        await eventually(lambda: debits(db, lost.id), timeout=150, interval=1)
    finally:
        restart_orchestrator(stack, CONTENTLINE_SILENCE_TIMEOUT_SECONDS=None, CONTENTLINE_STAGE_DEADLINE_SECONDS=None)
    after = api.get(f"/runs/{run_id}").json()
    assert after["status"] == "completed"
    s4 = stage(after, 4)
    assert s4["items_failed"] == 0 and s4["items_processed"] == s4["items_in"]
    assert stage(after, 5)["items_failed"] == 1  # this run did not work on the draft: it stays failed there
    assert (await batch_of(db, run_id, 4, 0)).status == "done"
    assert await debits(db, lost.id) == 1
    assert Decimal(after["total_credits_used"]) == sum(Decimal(s["credits"]) for s in after["stages"])
    assert Decimal(after["total_credits_used"]) > Decimal(view["total_credits_used"])
    async with db() as s:
        prompts = await s.scalar(select(func.count()).select_from(ImagePrompt).where(ImagePrompt.draft_id == draft.id))
        task = await s.get(WriterTask, task_id)
    assert prompts == 0 and task is not None
    log = activity(api, run_id)
    assert any("past the stage deadline: accepted" in m and "waits for the next run" in m for m in log)
    pending = {p["stage"]: p["pending"] for p in api.get(f"/sites/{site}/pipeline").json()["pending"]}
    assert pending[5] == 1  # the draft, recorded and charged, goes to stage 5 in the next run
