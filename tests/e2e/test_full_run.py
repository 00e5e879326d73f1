"""A whole automation run through Kafka, all five services and the fake provider, asserted from the DB and API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import ArticlePublished
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, Keyword, WriterTask
from shared.topics import ARTICLES_PUBLISHED
from tests.helpers import create_site, eventually, import_keywords, keyword_set, read_topic, start_run, wait_run
from tests.invariants import check_run

pytestmark = pytest.mark.e2e


async def count(session: AsyncSession, model: type, site_id: str) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(model.site_id == site_id)) or 0)


async def test_run_takes_keywords_to_review_gate(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api, "e2e")
    keywords = keyword_set(8, 8)
    summary = import_keywords(api, site, [*keywords, {"keyword": "  BEST Running   Shoes for flat feet "}])
    assert summary == {"received": 65, "imported": 64, "duplicates": 1, "rejected": []}

    run = start_run(api, site)
    assert run["status"] == "running" and run["initial_snapshot"]["pending"]["1"] == 64
    view = wait_run(api, run["run_id"], timeout=300)
    assert view["status"] == "completed", view
    assert view["current_stage"] == 7
    stages = {s["stage"]: s for s in view["stages"]}
    assert sorted(stages) == [1, 2, 3, 4, 5, 6, 7]

    async with db() as s:
        # every keyword clustered
        unclustered = await s.scalar(
            select(func.count()).select_from(Keyword).where(Keyword.site_id == site, Keyword.cluster_id.is_(None))
        )
        assert unclustered == 0
        n_clusters = await count(s, Cluster, site)
        assert 4 <= n_clusters < 64  # keywords were grouped, not one cluster each
        # ideas for every cluster, a task for every idea, a draft for every task
        clusters_without_ideas = await s.scalar(
            select(func.count())
            .select_from(Cluster)
            .where(Cluster.site_id == site, ~select(Idea.id).where(Idea.cluster_id == Cluster.id).exists())
        )
        assert clusters_without_ideas == 0
        n_ideas, n_tasks, n_drafts = [await count(s, m, site) for m in (Idea, WriterTask, Draft)]
        assert n_ideas >= n_clusters and n_tasks == n_ideas and n_drafts == n_tasks
        # image prompts for every draft, an image for every prompt, each a real PNG on disk
        drafts_without_prompts = await s.scalar(
            select(func.count())
            .select_from(Draft)
            .where(Draft.site_id == site, ~select(ImagePrompt.id).where(ImagePrompt.draft_id == Draft.id).exists())
        )
        assert drafts_without_prompts == 0
        n_prompts, n_images = await count(s, ImagePrompt, site), await count(s, Image, site)
        assert n_prompts >= n_drafts and n_images == n_prompts
        images = (await s.scalars(select(Image).where(Image.site_id == site))).all()
        for img in images:
            path = Path(img.path)
            assert path.stat().st_size == img.size_bytes
            with PILImage.open(path) as pic:
                assert pic.format == "PNG" and (pic.width, pic.height) == (img.width, img.height)
        drafts = (await s.scalars(select(Draft).where(Draft.site_id == site))).all()
        for d in drafts:
            assert d.body_markdown.count("\n## ") >= 3 and "<h2>" in d.body_html
            assert len(d.meta_title) <= 60 and len(d.meta_description) <= 160

    # per-stage results match the tables (a fresh site: everything was created by this run)
    assert stages[1]["items_processed"] == 64 and stages[1]["items_created"] == n_clusters
    assert stages[2]["items_created"] == n_ideas
    assert stages[3]["items_created"] == n_tasks
    assert stages[4]["items_created"] == n_drafts
    assert stages[5]["items_created"] == n_prompts
    assert stages[6]["items_created"] == n_images
    assert stages[7]["items_processed"] == n_drafts
    assert all(stages[n]["items_failed"] == 0 and not stages[n]["partial"] for n in range(1, 8))
    assert all(stages[n]["batches_done"] == stages[n]["batches_total"] for n in range(1, 7))
    assert view["progress"]["items_done"] == view["progress"]["items_total"] > 0
    async with db() as s:  # what the fault suite checks after every kill holds after a clean run too
        assert [str(v) for v in await check_run(s, view["run_id"], media_root=stack.media_dir)] == []

    # the activity log is in the database and, as configured for the tests, in a per-run file
    log = api.get(f"/runs/{view['run_id']}/activity", params={"limit": 1000}).json()
    lines = (stack.state_dir / "run-logs" / f"{view['run_id']}.log").read_text().splitlines()
    assert len(lines) == len(log) >= 14 and "run completed" in lines[-1] and "run completed" in log[-1]["message"]

    queue = api.get(f"/sites/{site}/review-queue").json()
    assert len(queue) == n_drafts
    assert all(item["images"] == item["image_prompts"] >= 1 for item in queue)

    # The review gate's human side: approve one and publish it, reject another; decisions are final.
    first, second = queue[0]["draft_id"], queue[1]["draft_id"]
    detail = api.get(f"/drafts/{first}").json()
    assert detail["decision"] is None and detail["body_html"].count("<h2>") >= 3
    assert all(img["path"] and img["width"] and img["alt_text"] for img in detail["images"])
    assert detail["images"][0]["placement"] == "featured"
    assert api.post(f"/drafts/{first}/publish").status_code == 409  # not approved yet
    approved = api.post(f"/drafts/{first}/review", json={"decision": "approved", "note": "good"})
    assert approved.status_code == 200 and approved.json()["decision"] == "approved"
    assert api.post(f"/drafts/{first}/review", json={"decision": "rejected"}).status_code == 409
    assert api.post(f"/drafts/{first}/publish").json()["decision"] == "published"
    assert api.post(f"/drafts/{first}/publish").status_code == 409  # published once: no second event
    assert api.post(f"/drafts/{second}/review", json={"decision": "rejected", "note": "off topic"}).status_code == 200
    assert api.post(f"/drafts/{second}/publish").status_code == 409
    assert api.post(f"/drafts/{second}/review", json={"decision": "maybe"}).status_code == 422
    remaining = {item["draft_id"] for item in api.get(f"/sites/{site}/review-queue").json()}
    assert len(remaining) == n_drafts - 2 and first not in remaining and second not in remaining

    # Publishing put exactly one ArticlePublished event on the topic, keyed by site, with the whole article.
    records = await eventually(
        lambda: read_topic(stack.kafka_bootstrap, ARTICLES_PUBLISHED, lambda r: r.key == site.encode())
    )
    events = [ArticlePublished.model_validate_json(r.value) for r in records]
    assert [e.draft_id for e in events] == [first]
    article = events[0]
    assert (article.title, article.slug, article.body_html, article.meta_description) == (
        detail["title"],
        detail["slug"],
        detail["body_html"],
        detail["meta_description"],
    )
    assert article.run_id == view["run_id"] and article.word_count == detail["word_count"]
    assert [(i.placement, i.path, i.checksum_sha256) for i in article.images] == [
        (img["placement"], img["path"], img["checksum_sha256"]) for img in detail["images"]
    ]
