"""Shared by the publishing tests: rows the pipeline would have written (a site, drafts with images), straight
into the real database, so a test can start at the review gate."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.publishing.settings import PublishingSettings
from shared.db.models import (
    Account,
    Cluster,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    PublishingSettingsRow,
    ScheduledPublication,
    Site,
    WordPressConnection,
    WriterTask,
)


@dataclass
class SeededSite:
    account_id: str
    site_id: str


async def seed_site(
    db: async_sessionmaker[AsyncSession],
    *,
    account_id: str | None = None,
    settings: dict[str, Any] | None = None,
    connected: bool = True,
) -> SeededSite:
    """A site (of a new account unless one is given) with publishing settings and, unless told not to, a
    WordPress connection whose password is a reference nobody resolves (nothing here talks to WordPress)."""
    tag = uuid.uuid4().hex[:8]
    site_id = f"site-{tag}"
    async with db.begin() as s:
        if account_id is None:
            account_id = f"acct-{tag}"
            s.add(Account(id=account_id, name=f"account {tag}"))
            await s.flush()
        s.add(Site(id=site_id, account_id=account_id, name=f"site {tag}"))
        await s.flush()
        if settings is not None:
            stored = PublishingSettings(**settings).model_dump(mode="json")
            s.add(PublishingSettingsRow(site_id=site_id, settings=stored))
        if connected:
            s.add(WordPressConnection(site_id=site_id, base_url="http://127.0.0.1:9", username="nobody",
                                      app_password_ref="env:CONTENTLINE_TEST_UNSET_PASSWORD"))  # fmt: skip
    return SeededSite(account_id, site_id)


async def seed_drafts(
    db: async_sessionmaker[AsyncSession], site_id: str, n: int, *, quality: list[int] | None = None,
    run_id: str | None = None,
) -> list[int]:
    """`n` drafts of the site, each with one image prompt and its image (so they are ready for review)."""
    ids = []
    async with db.begin() as s:
        cluster = Cluster(site_id=site_id, name=f"c{uuid.uuid4().hex[:6]}", name_norm=uuid.uuid4().hex, intent="x",
                          centroid=b"", size=0)  # fmt: skip
        s.add(cluster)
        await s.flush()
        for i in range(n):
            idea = Idea(site_id=site_id, cluster_id=cluster.id, seq=i, title=f"idea {i}", content_type="guide",
                        intent="x", primary_keyword=f"kw {i}", target_words=500, brief="b")  # fmt: skip
            s.add(idea)
            await s.flush()
            task = WriterTask(site_id=site_id, idea_id=idea.id, title=f"task {i}")
            s.add(task)
            await s.flush()
            score = quality[i] if quality else 90
            draft = Draft(site_id=site_id, task_id=task.id, run_id=run_id, title=f"Draft {i} {uuid.uuid4().hex[:4]}",
                          slug=f"draft-{i}-{uuid.uuid4().hex[:6]}", meta_title="m", meta_description="d",
                          body_markdown="x", body_html="<p>x</p>", word_count=1, target_words=500,
                          quality_score=score)  # fmt: skip
            s.add(draft)
            await s.flush()
            prompt = ImagePrompt(site_id=site_id, draft_id=draft.id, position=0, placement="featured", prompt="p",
                                 alt_text="a", caption="c")  # fmt: skip
            s.add(prompt)
            await s.flush()
            s.add(Image(site_id=site_id, prompt_id=prompt.id, draft_id=draft.id, path="/nonexistent.png",
                        checksum_sha256="0" * 64, size_bytes=1, mime="image/png", width=1, height=1))  # fmt: skip
            ids.append(draft.id)
    return ids


async def forget_schedule(db: async_sessionmaker[AsyncSession], site_id: str) -> None:
    """Rows due far in the future that no live ticker may ever hand over: removed after the test."""
    async with db.begin() as s:
        await s.execute(delete(ScheduledPublication).where(ScheduledPublication.site_id == site_id))
