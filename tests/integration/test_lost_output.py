"""Issue 12: a result is believed only for output the database holds.

What a crash with asynchronous commit does to a worker is reproduced exactly with a deferred trigger on the
outbox: when the writer's transaction commits, its result event stays (the relay publishes it), while its
drafts, its inbox row and its model-call records are deleted in that same commit, as if the crash had lost
them after the relay read the event. A second form deletes only the drafts (the worker keeps its inbox row and
answers every re-ask with the same result), which asking again can never repair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from devstack.stack import Stack
from services.orchestrator.runs.lost_output import LOST_OUTPUT_ASKS
from shared.db.models import AiCall, Draft, StageBatch
from tests.helpers import configure, create_site, import_keywords, keyword_set, stage, start_run, wait_run
from tests.integration.test_reask import activity, batch_of, debits, on_result
from tests.invariants import check_run

LOSE_DRAFTS = (
    "DELETE FROM draft_versions WHERE draft_id IN (SELECT id FROM drafts WHERE task_id IN ({tasks})); "
    "DELETE FROM drafts WHERE task_id IN ({tasks});"
)
LOSE_WORKER_STATE = "DELETE FROM inbox WHERE message_id = {command}; DELETE FROM ai_calls WHERE command_id = {command};"


@asynccontextmanager
async def losing_output(engine: AsyncEngine, site: str, seq: int, inbox_too: bool) -> AsyncIterator[None]:
    """The first time the writer commits its result for stage-4 batch `seq` of `site`, the commit keeps the
    result event and loses the drafts (and, with `inbox_too`, the inbox row and the model-call records)."""
    command = "NEW.payload->>'command_id'"
    tasks = f"SELECT jsonb_array_elements_text(item_ids)::bigint FROM stage_batches WHERE id = {command}"
    lose = LOSE_DRAFTS.format(tasks=tasks) + (LOSE_WORKER_STATE.format(command=command) if inbox_too else "")
    once = f"INSERT INTO test_lost_output VALUES ({command}) ON CONFLICT DO NOTHING; IF FOUND THEN {lose} END IF;"
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS test_lost_output (command_id text PRIMARY KEY)"))
    # At commit, after the writer's drafts are in: like a loss that follows the work.
    async with on_result(engine, site, 4, seq, once, at_commit=True):
        yield


async def run_losing_output(
    api: httpx.Client, engine: AsyncEngine, db: async_sessionmaker[AsyncSession], inbox_too: bool
) -> tuple[dict[str, Any], StageBatch, StageBatch]:
    """A 3-draft run (stages 5 and 6 off) whose stage-4 batch 0 loses its output; the run's view, that batch
    and batch 1 (untouched, for comparison)."""
    site = create_site(api)
    import_keywords(api, site, keyword_set(3, 2))
    configure(api, site, stage_enabled={"5": False, "6": False})
    async with losing_output(engine, site, 0, inbox_too=inbox_too):
        view = wait_run(api, start_run(api, site)["run_id"], timeout=180)
    assert view["status"] == "completed", view
    run_id = view["run_id"]
    return view, await batch_of(db, run_id, 4, 0), await batch_of(db, run_id, 4, 1)


async def drafts_of(db: async_sessionmaker[AsyncSession], task_ids: list[int]) -> int:
    async with db() as s:
        return int(await s.scalar(select(func.count()).select_from(Draft).where(Draft.task_id.in_(task_ids))) or 0)


async def calls_of(db: async_sessionmaker[AsyncSession], command_id: str) -> int:
    async with db() as s:
        return int(await s.scalar(select(func.count()).select_from(AiCall).where(AiCall.command_id == command_id)) or 0)


async def test_a_result_whose_output_a_crash_lost_is_asked_again_at_once_and_charged_once(
    stack: Stack, api: httpx.Client, engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    view, lost, other = await run_losing_output(api, engine, db, inbox_too=True)
    run_id = view["run_id"]
    s4 = stage(view, 4)
    assert s4["items_failed"] == 0 and s4["items_processed"] == s4["items_in"] >= 2, s4
    assert lost.status == "done" and lost.attempt == 2, (lost.status, lost.attempt)
    log = activity(api, run_id)
    told = [m for m in log if "holds no output for them" in m and f"command id {lost.id} (1 of" in m]
    assert len(told) == 1, log
    # Asked again at once, not after the silence timeout (120 s by default): no silence re-ask is logged.
    assert not [m for m in log if "no result" in m and f"command id {lost.id}" in m], log
    # The writer did the work again: one draft per task, one set of model calls, one charge.
    assert await drafts_of(db, [int(i) for i in lost.item_ids]) == len(lost.item_ids)
    assert await calls_of(db, lost.id) == await calls_of(db, other.id) > 0
    assert await debits(db, lost.id) == 1
    async with engine.connect() as conn:
        assert await check_run(conn, run_id, media_root=stack.media_dir) == []


async def test_output_that_asking_again_cannot_bring_back_fails_its_items_with_the_reason(
    stack: Stack, api: httpx.Client, engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    view, lost, other = await run_losing_output(api, engine, db, inbox_too=False)
    run_id = view["run_id"]
    assert lost.status == "done" and lost.attempt == 1 + LOST_OUTPUT_ASKS, (lost.status, lost.attempt)
    s4 = stage(view, 4)
    assert s4["items_failed"] == len(lost.item_ids), s4
    reasons = [f["reason"] for f in s4["failures"] if f["item_id"] in lost.item_ids]
    assert reasons and all(f"not in the database after {LOST_OUTPUT_ASKS} re-asks" in r for r in reasons), reasons
    told = [m for m in activity(api, run_id) if "holds no output for them" in m and lost.id in m]
    assert len(told) == LOST_OUTPUT_ASKS
    # The worker answered every ask from its inbox: its model calls were made once and are charged once.
    assert await calls_of(db, lost.id) == await calls_of(db, other.id) > 0
    assert await debits(db, lost.id) == 1
    assert await drafts_of(db, [int(i) for i in lost.item_ids]) == 0
    async with engine.connect() as conn:
        assert await check_run(conn, run_id, media_root=stack.media_dir) == []
