"""Run control against the real stack: one active run per site, pause/resume (also across an
orchestrator restart), cancel, per-run limits, disabled stages, invalid transitions, schedules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from devstack.stack import Stack
from services.orchestrator.costs import DEFAULT_COSTS
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.service import RunService
from shared.contracts import utcnow
from shared.db.models import Cluster, Keyword, Run, SiteConfigRow, StageBatch
from shared.delivery import Outbox
from shared.settings import Settings
from tests.helpers import (
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    slow_provider,
    stage,
    start_run,
    wait_run,
)


@pytest.fixture
def slow(fake: httpx.Client) -> Iterator[None]:
    slow_provider(fake, 250)
    yield
    slow_provider(fake, 0)


# One keyword a batch, more batches than a run keeps out in stage 1 (Settings.clustering_window, 64 by default),
# so some are still unreleased when the run is paused or cancelled.
STAGE1_WINDOW = Settings().clustering_window
PAST_THE_WINDOW = STAGE1_WINDOW + 16


def keywords_past_the_window() -> list[dict[str, object]]:
    """More keywords than keyword_set's 64: its topics again with a suffix."""
    base = keyword_set(8, 8)
    rows = [
        {"keyword": k["keyword"] + suffix, "volume": k["volume"]} for suffix in ("", " guide", " ideas") for k in base
    ]
    assert len(rows) >= PAST_THE_WINDOW
    return rows[:PAST_THE_WINDOW]


async def batch_counts(db: async_sessionmaker[AsyncSession], run_id: str, stage_no: int) -> dict[str, int]:
    async with db() as s:
        rows = await s.execute(
            select(StageBatch.status, func.count())
            .where(StageBatch.run_id == run_id, StageBatch.stage == stage_no)
            .group_by(StageBatch.status)
        )
        return dict(rows.all())


async def assert_each_keyword_clustered_once(db: async_sessionmaker[AsyncSession], site: str, n: int) -> None:
    async with db() as s:
        assigned = await s.scalar(
            select(func.count()).select_from(Keyword).where(Keyword.site_id == site, Keyword.cluster_id.is_not(None))
        )
        sizes = await s.scalar(select(func.sum(Cluster.size)).where(Cluster.site_id == site))
    assert assigned == n and sizes == n  # every keyword in exactly one cluster, counted once


def test_concurrent_run_now_starts_exactly_one_run(api: httpx.Client) -> None:
    site, other = create_site(api), create_site(api)
    for s in (site, other):
        import_keywords(api, s, keyword_set(2, 4))
        configure(api, s, stage_enabled={"2": False, "3": False, "4": False, "5": False, "6": False})

    def run_now(s: str) -> httpx.Response:
        return api.post(f"/sites/{s}/runs")

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(run_now, [site] * 12))
    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code == 409]
    assert len(created) == 1 and len(refused) == 11, [r.status_code for r in responses]
    run_id = created[0].json()["run_id"]
    assert all(r.json()["active_run_id"] == run_id and run_id in r.json()["detail"] for r in refused)
    # a different site runs at the same time
    assert run_now(other).status_code == 201
    assert wait_run(api, run_id)["status"] == "completed"


async def test_pause_mid_stage_then_resume_processes_every_item_once(
    api: httpx.Client, db: async_sessionmaker[AsyncSession], slow: None
) -> None:
    site = create_site(api)
    keywords = keywords_past_the_window()
    import_keywords(api, site, keywords)
    configure(api, site, batch_sizes={"1": 1}, stage_enabled={"3": False, "4": False, "5": False, "6": False})
    run = start_run(api, site)
    run_id = run["run_id"]
    # Paused at once: the start released the first window (its batches are in flight, each needs model calls
    # of 250 ms), the rest is unreleased. Waiting for some batches to be done first would race the passes: one
    # pass may cluster every released batch, and the refill after it, before the pause lands.
    paused = api.post(f"/runs/{run_id}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    inflight = api.get(f"/sites/{site}/processing").json()["batches"]
    known = {k["keyword"] for k in keywords}
    assert inflight and all(b["stage"] == 1 and len(b["items"]) == 1 for b in inflight)
    assert all(item["title"] in known for b in inflight for item in b["items"])

    # in-flight batches finish and are recorded, nothing new is released while paused
    async def settled() -> dict[str, int] | None:
        counts = await batch_counts(db, run_id, 1)
        return counts if not counts.get("released") else None

    counts = await eventually(settled, timeout=60)
    await asyncio.sleep(2)
    assert await batch_counts(db, run_id, 1) == counts
    view = api.get(f"/runs/{run_id}").json()
    s1 = stage(view, 1)
    assert view["status"] == "paused" and view["current_stage"] == 1 and s1["stopped_reason"] == "paused"
    assert 0 < s1["batches_done"] < s1["batches_total"] == PAST_THE_WINDOW
    assert api.post(f"/runs/{run_id}/pause").status_code == 409  # already paused

    assert api.post(f"/runs/{run_id}/resume").status_code == 200
    assert api.post(f"/runs/{run_id}/resume").status_code in (409, 200)  # running (409) or raced to completion
    done = wait_run(api, run_id)
    assert done["status"] == "completed"
    assert stage(done, 1)["items_processed"] == PAST_THE_WINDOW and stage(done, 1)["batches_done"] == PAST_THE_WINDOW
    await assert_each_keyword_clustered_once(db, site, PAST_THE_WINDOW)
    conflict = api.post(f"/runs/{run_id}/pause")
    assert conflict.status_code == 409 and "completed" in conflict.json()["detail"]


async def test_pause_restart_orchestrator_then_resume(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession], slow: None
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(5, 6))  # 30 keywords
    configure(api, site, batch_sizes={"1": 2}, stage_enabled={"3": False, "4": False, "5": False, "6": False})
    run_id = start_run(api, site)["run_id"]
    # Paused at once (see the test above): one pass can cluster all 15 batches, and a run paused after that is
    # paused in stage 2.
    assert api.post(f"/runs/{run_id}/pause").status_code == 200
    stack.stop_service("orchestrator")
    stack.start_service("orchestrator")  # a new process: everything it knows comes from the database
    view = api.get(f"/runs/{run_id}").json()
    assert view["status"] == "paused" and view["current_stage"] == 1
    assert api.post(f"/runs/{run_id}/resume").status_code == 200
    done = wait_run(api, run_id)
    assert done["status"] == "completed"
    assert stage(done, 1)["items_processed"] == 30 and stage(done, 1)["batches_done"] == 15
    await assert_each_keyword_clustered_once(db, site, 30)


async def test_cancel_frees_the_site_at_once_and_releases_nothing_more(
    api: httpx.Client, db: async_sessionmaker[AsyncSession], slow: None
) -> None:
    site = create_site(api)
    import_keywords(api, site, keywords_past_the_window())  # some batches are unreleased when it is cancelled
    configure(api, site, batch_sizes={"1": 1}, stage_enabled={"3": False, "4": False, "5": False, "6": False})
    run_id = start_run(api, site)["run_id"]
    cancelled = api.post(f"/runs/{run_id}/cancel")  # at once, while the first window is in flight (see the pause test)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.get(f"/sites/{site}/runs/current").json() is None
    second = api.post(f"/sites/{site}/runs")  # the site is free immediately
    assert second.status_code == 201, second.text
    assert api.post(f"/runs/{run_id}/resume").status_code == 409

    async with db() as s:
        cancelled_at = (await s.get(Run, run_id)).cancelled_at  # type: ignore[union-attr]
    await asyncio.sleep(3)
    async with db() as s:
        batches = (await s.scalars(select(StageBatch).where(StageBatch.run_id == run_id))).all()
    released = [b for b in batches if b.released_at is not None]
    assert released and all(b.released_at <= cancelled_at for b in released)  # type: ignore[operator]
    assert {b.status for b in batches} <= {"done", "cancelled", "released"}
    assert any(b.status == "cancelled" for b in batches)
    # in-flight batches finished and were recorded; the cancelled ones never reached a worker
    assert all(b.status == "done" for b in released)
    wait_run(api, second.json()["run_id"])


async def test_per_run_limit_processes_exactly_n_and_leaves_the_rest(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(4, 6))  # 24
    configure(
        api,
        site,
        limits={"max_keywords_per_run": 10},
        batch_sizes={"1": 4},
        stage_enabled={"2": False, "3": False, "4": False, "5": False, "6": False},
    )
    first = wait_run(api, start_run(api, site)["run_id"])
    s1 = stage(first, 1)
    assert first["status"] == "completed" and s1["items_in"] == 10 and s1["items_processed"] == 10
    assert s1["stopped_reason"] == "limit" and s1["partial"]
    assert api.get(f"/sites/{site}/pipeline").json()["pending"][0]["pending"] == 14
    second = wait_run(api, start_run(api, site)["run_id"])
    assert stage(second, 1)["items_processed"] == 10
    third = wait_run(api, start_run(api, site)["run_id"])
    assert stage(third, 1)["items_processed"] == 4 and stage(third, 1)["stopped_reason"] is None
    page1 = api.get(f"/sites/{site}/runs", params={"size": 2}).json()
    page2 = api.get(f"/sites/{site}/runs", params={"size": 2, "page": 2}).json()
    assert page1["total"] == 3 and [r["run_id"] for r in page1["runs"] + page2["runs"]] == [
        third["run_id"],
        second["run_id"],
        first["run_id"],
    ]  # newest first
    await assert_each_keyword_clustered_once(db, site, 24)


def test_disabled_stage_is_skipped_and_logged(api: httpx.Client) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 4))
    configure(api, site, stage_enabled={"3": False})
    view = wait_run(api, start_run(api, site)["run_id"])
    assert view["status"] == "completed"
    assert stage(view, 2)["items_created"] > 0
    s3 = stage(view, 3)
    assert s3["status"] == "skipped" and s3["stopped_reason"] == "disabled" and s3["items_processed"] == 0
    assert stage(view, 4)["status"] == "skipped" and stage(view, 4)["items_in"] == 0  # no tasks, nothing to write
    log = api.get(f"/runs/{view['run_id']}/activity", params={"stage": 3}).json()
    assert any("disabled, skipped" in line["message"] for line in log)
    assert all(line["stage"] == 3 for line in log)


def test_api_rejects_bad_input_with_reasons(api: httpx.Client) -> None:
    site = create_site(api)
    bad = api.patch(f"/sites/{site}/config", json={"timezone": "Nowhere/Land", "batch_sizes": {"1": -5}})
    assert bad.status_code == 422
    text = bad.text
    assert "timezone" in text and "unknown time zone" in text
    assert api.patch(f"/sites/{site}/config", json={"nope": 1}).status_code == 422
    shares = api.put(f"/sites/{site}/budget-shares", json={"shares": {"clustering": 90}})
    assert shares.status_code == 422 and "sum to 100" in shares.text
    assert api.get("/runs/run_missing/activity").status_code == 404
    assert api.post("/sites/nope/runs").json()["detail"] == "site 'nope' does not exist"


async def test_due_schedule_is_skipped_while_a_run_is_paused(
    api: httpx.Client, db: async_sessionmaker[AsyncSession], slow: None
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(4, 6))
    configure(api, site, batch_sizes={"1": 2}, stage_enabled={"3": False, "4": False, "5": False, "6": False})
    run_id = start_run(api, site)["run_id"]
    assert api.post(f"/runs/{run_id}/pause").status_code == 200
    configure(api, site, is_enabled=True, frequency="daily", scheduled_time="03:00", timezone="Europe/Paris")
    async with db.begin() as s:  # make it due now; the orchestrator's scheduler picks it up
        await s.execute(
            update(SiteConfigRow)
            .where(SiteConfigRow.site_id == site)
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )

    async def noted() -> str | None:
        async with db() as s:
            row = await s.get(SiteConfigRow, site)
            await s.refresh(row)  # type: ignore[arg-type]
            return row.last_schedule_note if row and row.last_schedule_note else None

    note = await eventually(noted, timeout=30)
    assert "skipped" in note and run_id in note and "paused" in note
    cfg = api.get(f"/sites/{site}/config").json()
    assert cfg["next_run_at"] > utcnow().isoformat()
    async with db() as s:
        runs = await s.scalar(select(func.count()).select_from(Run).where(Run.site_id == site))
    assert runs == 1
    api.post(f"/runs/{run_id}/cancel")


async def test_two_schedulers_start_one_run(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 3))
    configure(api, site, is_enabled=True, stage_enabled={"2": False, "3": False, "4": False, "5": False, "6": False})
    # Two more scheduler instances in this process, each with its own engine, racing the orchestrator's own.
    engines = [create_async_engine(stack.database_url) for _ in range(2)]
    settings = Settings(database_url=stack.database_url, kafka_bootstrap=stack.kafka_bootstrap)
    services = [
        RunService(
            async_sessionmaker(e, expire_on_commit=False), Engine(Outbox("orchestrator"), settings, DEFAULT_COSTS)
        )
        for e in engines
    ]
    try:
        async with db.begin() as s:
            await s.execute(
                update(SiteConfigRow)
                .where(SiteConfigRow.site_id == site)
                .values(next_run_at=utcnow() - timedelta(seconds=1))
            )
        results = await asyncio.gather(*(svc.schedule_due() for svc in services))
    finally:
        for e in engines:
            await e.dispose()
    await asyncio.sleep(1.5)  # the orchestrator's own scheduler had its chance too
    async with db() as s:
        runs = (await s.scalars(select(Run).where(Run.site_id == site))).all()
    assert len(runs) == 1 and runs[0].trigger == "scheduled"
    assert sum(len(r) for r in results) <= 1
    assert wait_run(api, runs[0].id)["status"] == "completed"
