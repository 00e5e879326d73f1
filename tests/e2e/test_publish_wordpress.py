"""Issue 14 end to end against the real broker, database and a REAL WordPress (devstack/wordpress.py): a run with
auto-approval and `immediate` publishing ends with posts whose title, slug, body, featured image, category and
tags match the drafts; the same command delivered twice makes one post; a post trashed in WordPress shows on its
draft after a sync; wrong credentials fail that site's draft with WordPress's reason while others publish."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from devstack.wordpress import WordPressProcess
from shared.contracts import PublishCommand
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, WriterTask
from shared.topics import PUBLISH_COMMANDS
from tests.helpers import (
    Tenant,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    publish,
    read_topic,
    start_run,
    wait_run,
)
from tests.integration.wordpress_support import (
    WRONG_PASSWORD,
    Seeded,
    marked_posts,
    ready_wordpress,
    results_for,
    seed_draft,
    term_names,
    wordpress_refusal,
)

pytestmark = pytest.mark.e2e
SPACING_ENV = "CONTENTLINE_PUBLISH_IMMEDIATE_SPACING_SECONDS"


@pytest.fixture(scope="module")
def wordpress(stack: Stack) -> WordPressProcess:
    """The local WordPress; the orchestrator restarted once so that `immediate` spaces drafts 1 s apart, not 60 s."""
    wp = ready_wordpress(stack)
    if stack.extra_env.get(SPACING_ENV) != "1":
        stack.extra_env[SPACING_ENV] = "1"
        stack.stop_service("orchestrator")
        stack.start_service("orchestrator")
    return wp


@pytest.fixture
async def rest(wordpress: WordPressProcess) -> AsyncIterator[httpx.AsyncClient]:
    auth = (wordpress.admin_user, wordpress.app_password)
    async with httpx.AsyncClient(base_url=f"{wordpress.rest_url}/wp/v2", auth=auth, timeout=30) as client:
        yield client


def connect(api: httpx.Client, site: str, wp: WordPressProcess, password: str | None = None) -> None:
    body = {"base_url": wp.url, "username": wp.admin_user, "app_password": password or wp.app_password}
    r = api.put(f"/sites/{site}/wordpress", json=body)
    assert r.status_code == 200, r.text


def publishing_of(api: httpx.Client, draft_id: int) -> dict[str, Any]:
    return dict(api.get(f"/drafts/{draft_id}").json()["publishing"] or {})


async def all_settled(api: httpx.Client, draft_ids: list[int], timeout: float = 240) -> dict[int, dict[str, Any]]:
    def settled() -> dict[int, dict[str, Any]] | None:
        seen = {d: publishing_of(api, d) for d in draft_ids}
        return seen if all(p.get("state") in {"published", "failed"} for p in seen.values()) else None

    return dict(await eventually(settled, timeout=timeout, interval=1))


async def expected_terms(db: async_sessionmaker[AsyncSession], draft: Draft) -> tuple[str, set[str]]:
    """The draft's cluster (its category) and the idea's keywords, at most 10 (its tags, as the site maps them)."""
    async with db() as s:
        row = (
            await s.execute(
                select(Cluster.name, Idea.primary_keyword, Idea.secondary_keywords)
                .join(Idea, Idea.cluster_id == Cluster.id)
                .join(WriterTask, WriterTask.idea_id == Idea.id)
                .where(WriterTask.id == draft.task_id)
            )
        ).one()
    return row.name, set(list(dict.fromkeys([row.primary_keyword, *row.secondary_keywords]))[:10])


def headings(html: str) -> list[str]:
    return re.findall(r"<h2[^>]*>(.*?)</h2>", html)


# ---------------------------------------------------------------------- the whole way
async def test_a_run_with_auto_approval_and_immediate_publishing_ends_with_matching_posts(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, api: httpx.Client,
    db: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    site = create_site(api, "publishing e2e")
    import_keywords(api, site, keyword_set(2, 4))
    connect(api, site, wordpress)
    check = api.post(f"/sites/{site}/wordpress/test").json()
    assert check["ok"] and check["marker_plugin"], check
    r = api.patch(f"/sites/{site}/publishing/settings", json={"auto_approval_enabled": True,
                                                               "scheduling_mode": "immediate"})  # fmt: skip
    assert r.status_code == 200, r.text

    run = wait_run(api, start_run(api, site)["run_id"], timeout=300)
    assert run["status"] == "completed", run
    async with db() as s:
        drafts = list((await s.scalars(select(Draft).where(Draft.site_id == site).order_by(Draft.id))).all())
    assert len(drafts) >= 2
    outcome = await all_settled(api, [d.id for d in drafts])
    assert {p["state"] for p in outcome.values()} == {"published"}, outcome
    assert all(api.get(f"/drafts/{d.id}").json()["decided_by"] == "auto" for d in drafts)

    for draft in drafts:
        p = outcome[draft.id]
        post = (await rest.get(f"/posts/{p['remote_post_id']}", params={"context": "edit"})).json()
        assert post["title"]["raw"] == draft.title
        assert post["slug"] == draft.slug
        assert (post["status"], p["remote_status"], post["link"]) == ("publish", "publish", p["url"])
        body = post["content"]["raw"]
        assert headings(body) == headings(draft.body_html) and len(headings(body)) >= 3
        cluster, keywords = await expected_terms(db, draft)
        assert await term_names(rest, "categories", post["categories"]) == {cluster}
        assert await term_names(rest, "tags", post["tags"]) == keywords
        async with db() as s:
            featured = (
                await s.execute(
                    select(Image).join(ImagePrompt, ImagePrompt.id == Image.prompt_id)
                    .where(Image.draft_id == draft.id, ImagePrompt.placement == "featured")
                )
            ).scalar_one()  # fmt: skip
        media = (await rest.get(f"/media/{post['featured_media']}", params={"context": "edit"})).json()
        uploaded = httpx.get(media["source_url"], timeout=30).content
        assert hashlib.sha256(uploaded).hexdigest() == featured.checksum_sha256 == hashlib.sha256(
            Path(featured.path).read_bytes()).hexdigest()  # fmt: skip

    activity = [a["message"] for a in api.get(f"/runs/{run['run_id']}/activity", params={"limit": 500}).json()]
    for draft in drafts:
        why = f"quality score {draft.quality_score} passes the floor 70"
        assert f"draft {draft.id} approved automatically: {why}" in activity
        assert any(m.startswith(f"draft {draft.id} handed to the publisher") for m in activity)
        assert any(m.startswith(f"draft {draft.id} published on WordPress as post ") for m in activity)
    queue = api.get(f"/sites/{site}/publishing/queue").json()
    assert {q["state"] for q in queue} == {"published"} and len(queue) == len(drafts)

    # -------------------------------------------------------------- the same command delivered twice: one post
    first = drafts[0]
    records = await read_topic(stack.kafka_bootstrap, PUBLISH_COMMANDS, lambda rec: rec.key == site.encode())
    commands = [PublishCommand.model_validate_json(rec.value) for rec in records]
    original = next(c for c in commands if c.draft_id == first.id)
    await publish(stack.kafka_bootstrap, PUBLISH_COMMANDS, original.model_dump_json().encode(), key=site.encode())
    # A new command for the same draft after it: once its answer is there, the duplicate before it was handled.
    after = PublishCommand(account_id=original.account_id, site_id=site, draft_id=first.id)
    await publish(stack.kafka_bootstrap, PUBLISH_COMMANDS, after.model_dump_json().encode(), key=site.encode())
    answer = await eventually(lambda: results_for(stack, after.message_id), timeout=120, interval=1)
    assert answer[0].already_published and answer[0].remote_post_id == outcome[first.id]["remote_post_id"]
    assert len(await results_for(stack, original.message_id)) == 1
    seeded = Seeded(original.account_id, site, first.id, first.title, first.slug, first.meta_description, "", [])
    assert [p["id"] for p in await marked_posts(rest, seeded)] == [outcome[first.id]["remote_post_id"]]
    assert publishing_of(api, first.id)["state"] == "published"

    # -------------------------------------------------------------- trashed in WordPress: on the draft after a sync
    trashed = (await rest.delete(f"/posts/{outcome[first.id]['remote_post_id']}")).json()
    assert trashed["status"] == "trash"
    seen = await eventually(lambda: publishing_of(api, first.id)["remote_status"] == "trash", timeout=90)
    assert seen
    lines = [a["message"] for a in api.get(f"/runs/{run['run_id']}/activity", params={"limit": 500}).json()]
    assert any(m.startswith(f"draft {first.id}: WordPress post ") and "is now trash (was publish)" in m for m in lines)


# ---------------------------------------------------------------------- wrong credentials
async def test_wrong_credentials_fail_that_draft_with_wordpress_reason_and_nothing_else_stops(
    stack: Stack, wordpress: WordPressProcess, api: httpx.Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    code, message = await wordpress_refusal(wordpress)
    good, bad = create_site(api, "good credentials"), create_site(api, "wrong credentials")
    connect(api, good, wordpress)
    connect(api, bad, wordpress, password=WRONG_PASSWORD)
    refused = api.post(f"/sites/{bad}/wordpress/test").json()
    assert not refused["ok"] and message in refused["problem"]
    for site in (good, bad):
        api.patch(f"/sites/{site}/publishing/settings", json={"scheduling_mode": "immediate"})
    bad_draft = (await seed_draft(db, stack, tenant.account_id, bad)).draft_id
    good_draft = (await seed_draft(db, stack, tenant.account_id, good)).draft_id
    for draft_id in (bad_draft, good_draft):  # approved by a person: scheduled at once, handed over at the tick
        r = api.post(f"/drafts/{draft_id}/review", json={"decision": "approved", "note": "go"})
        assert r.status_code == 200 and r.json()["publishing"]["state"] == "scheduled", r.text

    outcome = await all_settled(api, [bad_draft, good_draft])
    failed, published = outcome[bad_draft], outcome[good_draft]
    assert failed["state"] == "failed" and failed["reason_code"] == "publish_failed"
    assert failed["reason"] == f"WordPress refused the credentials (401 {code}): {message}"
    assert published["state"] == "published" and published["url"].startswith(wordpress.url)
    queue = api.get(f"/sites/{bad}/publishing/queue", params={"state": "failed"}).json()
    assert [(q["draft_id"], q["reason"]) for q in queue] == [(bad_draft, failed["reason"])]
