"""The imager reads a command's input and what of it was done before in one statement (issue 13), against the
real database: only the command's site's rows come back, and an item counts as done when its output exists."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.imager import repository as repo
from shared.db.models import Image, ImagePrompt
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
