"""What the AI stages produce, asserted by structure: clusters that merge across batches and runs,
unique names, idempotent re-runs, drafts that follow their outline inside the length band, and
invalid model output that fails only its item."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import AiCall, Cluster, Draft, Idea, Keyword, WriterTask
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    import_keywords,
    stage,
    start_run,
    wait_run,
)


async def clusters_of(db: async_sessionmaker[AsyncSession], site: str) -> dict[str, int | None]:
    async with db() as s:
        rows = await s.execute(select(Keyword.keyword_norm, Keyword.cluster_id).where(Keyword.site_id == site))
        return dict(rows.all())


async def test_clusters_merge_across_batches_and_runs_without_duplicates(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    first = ["coffee grinder burr", "mortgage rates today", "coffee grinder manual", "mortgage rates 30 year fixed"]
    import_keywords(api, site, [{"keyword": k} for k in first])
    # batches of one keyword: related keywords can only meet through the site's existing clusters
    configure(api, site, batch_sizes={"1": 1}, stage_enabled=CLUSTERING_ONLY)
    run1 = wait_run(api, start_run(api, site)["run_id"])
    assert stage(run1, 1)["batches_done"] == 4 and stage(run1, 1)["items_processed"] == 4
    after1 = await clusters_of(db, site)
    assert after1["coffee grinder burr"] == after1["coffee grinder manual"]
    assert after1["mortgage rates today"] == after1["mortgage rates 30 year fixed"]
    assert len(set(after1.values())) == 2 == stage(run1, 1)["items_created"]
    async with db() as s:  # four batches, one embeddings request: the first batch fetched ahead for the rest
        kinds = (await s.scalars(select(AiCall.kind).where(AiCall.run_id == run1["run_id"]))).all()
    assert kinds.count("embeddings") == 1 and kinds.count("chat") == 2

    import_keywords(api, site, [{"keyword": "coffee grinder for espresso"}, {"keyword": "mortgage rates forecast"}])
    run2 = wait_run(api, start_run(api, site)["run_id"])
    after2 = await clusters_of(db, site)
    assert after2["coffee grinder for espresso"] == after1["coffee grinder burr"]  # joined across runs
    assert after2["mortgage rates forecast"] == after1["mortgage rates today"]
    assert stage(run2, 1)["items_created"] == 0 and len(set(after2.values())) == 2

    async with db() as s:
        names = (await s.scalars(select(Cluster.name_norm).where(Cluster.site_id == site))).all()
        sizes = dict((await s.execute(select(Cluster.id, Cluster.size).where(Cluster.site_id == site))).all())
    assert len(names) == len(set(names))
    assert sorted(sizes.values()) == [3, 3]

    # nothing new: a third run is refused with the reason, and nothing changes
    refused = api.post(f"/sites/{site}/runs")
    assert refused.status_code == 409 and refused.json()["pending"]["1"] == 0, refused.text
    assert await clusters_of(db, site) == after2


async def test_drafts_follow_their_outline_inside_the_length_band(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, [{"keyword": k} for k in ("home espresso machine", "espresso machine under 500")])
    configure(api, site, stage_enabled={"5": False, "6": False}, options={"target_words": 1600, "ideas_per_cluster": 2})
    view = wait_run(api, start_run(api, site)["run_id"])
    assert view["status"] == "completed" and stage(view, 4)["items_created"] >= 2
    async with db() as s:
        rows = (
            await s.execute(
                select(Draft, Idea)
                .join(WriterTask, Draft.task_id == WriterTask.id)
                .join(Idea, WriterTask.idea_id == Idea.id)
                .where(Draft.site_id == site)
            )
        ).all()
    assert len(rows) == stage(view, 4)["items_created"]
    for draft, idea in rows:
        h2 = re.findall(r"^## (.+)$", draft.body_markdown, flags=re.M)
        h3 = re.findall(r"^### (.+)$", draft.body_markdown, flags=re.M)
        outline_h2 = [o["heading"] for o in idea.outline if o["level"] == 2]
        outline_h3 = [o["heading"] for o in idea.outline if o["level"] == 3]
        assert h2[: len(outline_h2)] == outline_h2 and h2[len(outline_h2) :] == ["Conclusion", "FAQ"]
        assert all(h in h3 for h in outline_h3)
        assert abs(draft.word_count - draft.target_words) <= 0.15 * draft.target_words, (
            draft.word_count,
            draft.target_words,
        )
        assert draft.body_markdown.split("\n\n")[0].strip() and not draft.body_markdown.startswith("#")
        assert len(draft.meta_title) <= 60 and len(draft.meta_description) <= 160
        assert draft.slug and re.fullmatch(r"[a-z0-9-]+", draft.slug)
        assert 0 <= draft.quality_score <= 100 and isinstance(draft.quality_notes, list)


@pytest.fixture
def malformed_for(fake: httpx.Client) -> Iterator[str]:
    marker = "zqxfault"
    assert fake.post("/config", json={"malformed_if_prompt_contains": marker}).status_code == 200
    yield marker
    fake.post("/config", json={"malformed_if_prompt_contains": None})


async def test_invalid_model_output_is_retried_then_fails_only_its_item(
    api: httpx.Client, db: async_sessionmaker[AsyncSession], malformed_for: str
) -> None:
    site = create_site(api)
    good = ["dog training puppy", "dog training crate", "indoor plants low light"]
    import_keywords(api, site, [{"keyword": k} for k in [*good, f"{malformed_for} widget"]])
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    view = wait_run(api, start_run(api, site)["run_id"])
    s1 = stage(view, 1)
    assert view["status"] == "completed"  # the stage completed with a partial flag, the run went on
    assert s1["items_processed"] == 3 and s1["items_failed"] == 1 and s1["partial"]
    (failure,) = s1["failures"]
    assert "invalid output after 3 attempts" in failure["reason"]
    clusters = await clusters_of(db, site)
    assert clusters[f"{malformed_for} widget"] is None and all(clusters[k] is not None for k in good)
    async with db() as s:
        calls = (
            await s.scalars(
                select(AiCall).where(
                    AiCall.run_id == view["run_id"], AiCall.purpose == "cluster-label", AiCall.ok.is_(False)
                )
            )
        ).all()
        pending = await s.scalar(
            select(func.count()).select_from(Keyword).where(Keyword.site_id == site, Keyword.cluster_id.is_(None))
        )
    assert len(calls) == 3 and all("invalid structured output" in (c.error or "") for c in calls)
    assert pending == 1  # reported, not dropped: the next run tries it again


async def test_a_stage_whose_items_all_fail_leaves_the_run_completed_and_partial(
    api: httpx.Client, malformed_for: str
) -> None:
    site = create_site(api)
    import_keywords(api, site, [{"keyword": f"{malformed_for} gadget"}])
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    view = wait_run(api, start_run(api, site)["run_id"])
    s1 = stage(view, 1)
    # the worker answered (item failures), so the run goes on (only missing answers fail a run), but it does not
    # pass for a success: nothing came out, and it says why
    assert view["status"] == "completed" and view["stopped_reason"] == "no_output"
    assert view["error_message"].startswith("no output: stage 1 (keywords → clusters) produced nothing; 1 item(s)")
    assert s1["status"] == "completed" and s1["partial"] and s1["items_failed"] == 1
    again = wait_run(api, start_run(api, site)["run_id"])  # the failed item is tried again, not lost
    assert stage(again, 1)["items_in"] == 1
