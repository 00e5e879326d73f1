"""Stage-1 batches that wait for their turn are clustered along with the batch whose turn it is
(services/clusterer/convoy.py), each with its own result; a clusterer killed in such a pass loses nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from services.clusterer import repository as repo
from shared.db.models import AiCall, Cluster, InboxMessage, Keyword, StageBatch
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    slow_provider,
    start_run,
    wait_run,
)

KEYWORDS = keyword_set(6, 4)  # 24 keywords, 6 topics
BATCH = 3  # 8 stage-1 batches, all released at once (the window is 16)


async def stage1(db: async_sessionmaker[AsyncSession], run_id: str) -> list[StageBatch]:
    async with db() as s:
        rows = await s.scalars(select(StageBatch).where(StageBatch.run_id == run_id, StageBatch.stage == 1))
        return sorted(rows, key=lambda b: b.seq)


async def calls_per_command(db: async_sessionmaker[AsyncSession], run_id: str) -> dict[str, Counter[str]]:
    async with db() as s:
        rows = (await s.execute(select(AiCall.command_id, AiCall.purpose).where(AiCall.run_id == run_id))).all()
    out: dict[str, Counter[str]] = {}
    for command_id, purpose in rows:
        out.setdefault(command_id, Counter())[purpose] += 1
    return out


async def site_state(db: async_sessionmaker[AsyncSession], site: str) -> tuple[int, list[str]]:
    """(clustered keywords, the names of the site's clusters)."""
    async with db() as s:
        clustered = await s.scalar(
            select(func.count()).select_from(Keyword).where(Keyword.site_id == site, Keyword.cluster_id.is_not(None))
        )
        names = list(await s.scalars(select(Cluster.name_norm).where(Cluster.site_id == site)))
    return int(clustered or 0), names


def outcome(batch: StageBatch) -> dict[str, Any]:
    assert batch.status == "done", (batch.seq, batch.status, batch.result)
    return dict(batch.result or {})


async def test_waiting_batches_ride_along_and_each_gets_its_own_result(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, KEYWORDS)
    configure(api, site, stage_enabled=CLUSTERING_ONLY, batch_sizes={"1": BATCH})
    slow_provider(fake, 400)  # the first batch's turn (embedding, naming) is long: the others load and wait
    try:
        run_id = start_run(api, site)["run_id"]
        assert wait_run(api, run_id)["status"] == "completed"
    finally:
        slow_provider(fake, 0)

    batches = await stage1(db, run_id)
    assert len(batches) == len(KEYWORDS) // BATCH
    calls = await calls_per_command(db, run_id)
    results = {b.id: outcome(b) for b in batches}
    # Every batch has its own result, and together they account for every keyword once.
    assert sum(r["processed"] + r["failed"] + r["skipped"] for r in results.values()) == len(KEYWORDS)
    clustered, names = await site_state(db, site)
    assert clustered == sum(r["processed"] for r in results.values()) > 0
    # Fewer passes than batches: batches clustered with no model call of their own rode along with one that had.
    passes = [b for b in batches if b.id in calls]
    riders = [b for b in batches if b.id not in calls and results[b.id]["processed"] > 0]
    assert riders, {b.seq: (dict(calls.get(b.id, {})), results[b.id]) for b in batches}
    assert len(passes) < len(batches)
    assert batches[0].id in calls  # the first batch's turn came at once: it made the site's space
    # A rider's result committed in its pass's transaction (PostgreSQL's now() is the transaction's start).
    async with db() as s:
        inbox = dict(
            (
                await s.execute(
                    select(InboxMessage.message_id, InboxMessage.processed_at).where(
                        InboxMessage.consumer == "clusterer", InboxMessage.message_id.in_([b.id for b in batches])
                    )
                )
            ).all()
        )
    assert len(inbox) == len(batches)
    pass_times = {inbox[b.id] for b in passes}
    assert all(inbox[b.id] in pass_times for b in riders)
    # Each cluster named once, by one pass, and no name twice.
    labels = sum(c["cluster-label"] for c in calls.values())
    assert labels == len(names) == len(set(names))


async def test_a_clusterer_killed_in_a_pass_with_riders_loses_none_and_clusters_each_keyword_once(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, KEYWORDS)
    configure(api, site, stage_enabled=CLUSTERING_ONLY, batch_sizes={"1": BATCH})
    slow_provider(fake, 1500)

    def chat() -> int:
        return int(fake.get("/stats").json()["chat"])

    try:
        before = chat()
        run_id = start_run(api, site)["run_id"]

        async def naming_in_flight() -> bool:
            # the first pass (the first batch, and those loaded behind it by then) is naming its clusters
            return chat() > before and not [b for b in await stage1(db, run_id) if b.status == "done"]

        await eventually(naming_in_flight, timeout=60, interval=0.1)
        await asyncio.sleep(0.3)
        stack.kill_service("clusterer")
        slow_provider(fake, 100)
        stack.start_service("clusterer")
        assert wait_run(api, run_id)["status"] == "completed"
    finally:
        slow_provider(fake, 0)
        if "clusterer" not in stack.procs:
            stack.start_service("clusterer")

    batches = await stage1(db, run_id)
    results = {b.id: outcome(b) for b in batches}
    clustered, names = await site_state(db, site)
    assert clustered == sum(r["processed"] for r in results.values())
    assert sum(r["processed"] + r["failed"] + r["skipped"] for r in results.values()) == len(KEYWORDS)
    assert len(names) == len(set(names))  # nothing named twice by the repeated pass
    calls = await calls_per_command(db, run_id)
    assert sum(c["cluster-label"] for c in calls.values()) == len(names)  # the killed pass's calls: not recorded
    async with db() as s:
        answered = await s.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(InboxMessage.consumer == "clusterer", InboxMessage.message_id.in_(list(results)))
        )
    assert answered == len(batches)  # one committed result per command


async def test_a_pass_stores_its_clusters_and_vectors_in_one_statement_each(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """The pass's SQL against PostgreSQL: a name the site has, or one given twice, is inserted once; vectors of
    another model or dimension are replaced, the same ones left alone."""
    site = create_site(api)
    import_keywords(api, site, keyword_set(1, 3))
    async with db() as s:
        ids = sorted(await s.scalars(select(Keyword.id).where(Keyword.site_id == site)))
    centroid = np.ones(4, np.float32)

    def row(name: str) -> repo.NewClusterRow:
        return repo.NewClusterRow(name.title(), name, "d", "informational", centroid)

    async with db.begin() as s:
        first = await repo.insert_clusters(s, site, "run-a", [row("shoes")], "m")
    async with db.begin() as s:
        second = await repo.insert_clusters(s, site, "run-b", [row("shoes"), row("boots"), row("boots")], "m")
        existing = await repo.lock_clusters_by_name(s, site, ["shoes"])
    assert list(second) == ["boots"] and existing == first
    _, names = await site_state(db, site)
    assert sorted(names) == ["boots", "shoes"]

    vectors = {i: np.full(4, i, np.float32) for i in ids}
    async with db.begin() as s:
        assert sorted(await repo.save_embeddings(s, vectors, "m")) == ids
    async with db.begin() as s:
        assert await repo.save_embeddings(s, vectors, "m") == []  # already in this model's space
        assert await repo.save_embeddings(s, {ids[0]: np.zeros(8, np.float32)}, "m") == [ids[0]]
    async with db() as s:
        stored = await repo.load_embeddings(s, ids, "m", 4)
    assert sorted(stored) == ids[1:] and stored[ids[1]].tolist() == [ids[1]] * 4
