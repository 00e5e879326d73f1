"""The workers read a command's input and what of it was done before in one statement (issue 13), against the
real database: only the command's site's rows come back, and an item counts as done when its output exists."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ideator import repository as ideator_repo
from services.imager import repository as repo
from services.writer import repository as writer_repo
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, Keyword, WriterTask
from shared.db.session import autocommit
from tests.integration.publishing_support import seed_drafts, seed_site


async def test_drafts_and_prompts_come_with_what_was_done_before_and_only_of_the_site(
    db: async_sessionmaker[AsyncSession],
) -> None:
    mine, other = (await seed_site(db, connected=False)).site_id, (await seed_site(db, connected=False)).site_id
    done_draft, bare_draft = await seed_drafts(db, mine, 2)  # each with a prompt and its image
    [foreign_draft] = await seed_drafts(db, other, 1)
    async with db.begin() as s:
        # the second draft keeps its prompt but loses its image, a third prompt has none at all
        bare_prompt = await s.scalar(select(ImagePrompt.id).where(ImagePrompt.draft_id == bare_draft))
        await s.execute(delete(Image).where(Image.prompt_id == bare_prompt))
        await s.execute(delete(ImagePrompt).where(ImagePrompt.draft_id == bare_draft))
        s.add(ImagePrompt(site_id=mine, draft_id=bare_draft, position=0, placement="featured", prompt="p",
                          alt_text="a", caption="c"))  # fmt: skip
        await s.flush()
        rows = await s.execute(
            select(ImagePrompt.draft_id, ImagePrompt.id).where(
                ImagePrompt.draft_id.in_([done_draft, bare_draft, foreign_draft])
            )
        )
        prompts: dict[int, int] = {row.draft_id: row.id for row in rows}
        extra = ImagePrompt(site_id=mine, draft_id=done_draft, position=1, placement="after-section-2",
                            prompt="p2", alt_text="a", caption="c")  # fmt: skip
        s.add(extra)
        await s.flush()
        extra_id = extra.id

    async with autocommit(db) as s:
        drafts, with_prompts = await repo.load_drafts(s, mine, [done_draft, bare_draft, foreign_draft, -1])
        assert sorted(d.id for d in drafts) == sorted([done_draft, bare_draft])  # not the other site's draft
        assert with_prompts == {done_draft, bare_draft}
        drafts, with_prompts = await repo.load_drafts(s, mine, [])
        assert drafts == [] and with_prompts == set()

        asked = [prompts[done_draft], prompts[bare_draft], extra_id, prompts[foreign_draft]]
        found, with_images = await repo.load_prompts(s, mine, asked)
        assert sorted(p.id for p in found) == sorted([prompts[done_draft], prompts[bare_draft], extra_id])
        assert with_images == {prompts[done_draft]}  # the re-made prompt and the extra one have no image yet


async def test_writer_tasks_come_with_their_live_draft_only_and_only_of_the_site(
    db: async_sessionmaker[AsyncSession],
) -> None:
    mine, other = (await seed_site(db, connected=False)).site_id, (await seed_site(db, connected=False)).site_id
    kept, replaced = await seed_drafts(db, mine, 2)
    [foreign] = await seed_drafts(db, other, 1)
    async with db.begin() as s:
        rows = await s.execute(select(Draft.id, Draft.task_id).where(Draft.id.in_([kept, replaced, foreign])))
        task_of: dict[int, int] = {row.id: row.task_id for row in rows}
        # the second task's draft was rejected and superseded; its new draft (held back) is the live one
        await s.execute(update(Draft).where(Draft.id == replaced).values(superseded_at=datetime.now(UTC)))
        fresh = Draft(site_id=mine, task_id=task_of[replaced], run_id="run-x", title="again", slug=f"again-{replaced}",
                      meta_title="m", meta_description="d", body_markdown="x", body_html="<p>x</p>", word_count=1,
                      target_words=500, quality_score=10, quality_passed=False)  # fmt: skip
        idea = Idea(site_id=mine, cluster_id=(await s.scalars(select(Cluster.id).where(Cluster.site_id == mine))).one(),
                    seq=9, title="later idea", content_type="guide", intent="x", primary_keyword="kw 9",
                    target_words=500, brief="b")  # fmt: skip
        s.add(idea)
        await s.flush()
        bare = WriterTask(site_id=mine, idea_id=idea.id, title="no draft yet")
        s.add_all([fresh, bare])
        await s.flush()
        fresh_id, bare_id = fresh.id, bare.id

    async with autocommit(db) as s:
        asked = [task_of[kept], task_of[replaced], bare_id, task_of[foreign]]
        tasks, existing = await writer_repo.load_tasks(s, mine, asked)
    assert sorted(t.id for t in tasks) == sorted([task_of[kept], task_of[replaced], bare_id])
    assert set(existing) == {task_of[kept], task_of[replaced]}
    assert existing[task_of[kept]].id == kept and existing[task_of[kept]].quality_passed
    assert existing[task_of[replaced]].id == fresh_id  # not the superseded one
    assert not existing[task_of[replaced]].quality_passed and existing[task_of[replaced]].run_id == "run-x"


async def test_clusters_come_with_their_keywords_by_volume_and_whether_they_have_ideas(
    db: async_sessionmaker[AsyncSession],
) -> None:
    mine, other = (await seed_site(db, connected=False)).site_id, (await seed_site(db, connected=False)).site_id
    [with_ideas] = await seed_drafts(db, mine, 1)  # its cluster has an idea
    await seed_drafts(db, other, 1)
    async with db.begin() as s:
        # a fresh site has the one cluster seed_drafts made for it
        seeded = (await s.scalars(select(Cluster.id).where(Cluster.site_id == mine))).one()
        foreign = (await s.scalars(select(Cluster.id).where(Cluster.site_id == other))).one()
        fresh = Cluster(site_id=mine, name="fresh", name_norm=f"fresh-{with_ideas}", intent="informational",
                        centroid=b"", size=3)  # fmt: skip
        s.add(fresh)
        await s.flush()
        for word, volume in (("low", 10), ("none", None), ("high", 900)):
            s.add(Keyword(site_id=mine, keyword=f"{word} kw", keyword_norm=f"{word} kw {fresh.id}", volume=volume,
                          cluster_id=fresh.id))  # fmt: skip
        await s.flush()
        fresh_id = fresh.id

    async with autocommit(db) as s:
        briefs, done = await ideator_repo.load_clusters(s, mine, [seeded, fresh_id, foreign])
    assert sorted(b.id for b in briefs) == sorted([seeded, fresh_id])
    assert done == {seeded}
    assert next(b for b in briefs if b.id == fresh_id).keywords == ["high kw", "low kw", "none kw"]
