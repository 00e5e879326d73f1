"""A person's work on a draft before the decision: edit its title, meta and body (every text it had is kept
as a version, the model's original is version 1 and can be restored), and regenerate a rejected draft.

Ownership. The writer writes a draft; from then on its text is the review domain's: an edit rewrites the
draft's text columns (so the publisher and everything else that reads drafts sees what the person chose)
and records the text in `draft_versions`. The Markdown is made inert and the HTML re-rendered through
`shared.safe_html` exactly as the writer does, so an edit can never carry live markup.

Regeneration. A rejected draft is marked superseded and a targeted run (stage 4 for its task, then its
image prompts, images and the review gate) is started in the same transaction through the run engine:
reserved and charged like any other run, refused (402, 409) with nothing changed. The old draft keeps its
decision, versions, image prompts and images (history; its files stay in the media store), and leaves
every queue; the task's new draft is the live one (one live draft per task, a partial unique index).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.config import RunTarget
from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.runs import service as runs
from services.orchestrator.runs.views import RunView
from services.orchestrator.sites import service as sites
from shared.contracts import Stage, utcnow
from shared.db.models import Draft, DraftVersion, ReviewDecision, Site
from shared.safe_html import inert_markdown, render_markdown
from shared.text import slugify, word_count

TEXT_FIELDS = ("title", "meta_title", "meta_description", "body_markdown")


class Regeneration(BaseModel):
    superseded_draft_id: int
    task_id: int
    run: RunView


@dataclass(frozen=True)
class DraftText:
    title: str
    meta_title: str
    meta_description: str
    body_markdown: str


async def lock_draft(session: AsyncSession, account_id: str, draft_id: int) -> Draft:
    draft = await session.scalar(
        select(Draft)
        .join(Site, Site.id == Draft.site_id)
        .where(Draft.id == draft_id, Site.account_id == account_id)
        .with_for_update(of=Draft)
        .execution_options(populate_existing=True)
    )
    if draft is None:
        raise NotFoundError(f"draft {draft_id} does not exist")
    return draft


async def versions_of(session: AsyncSession, draft_id: int) -> list[DraftVersion]:
    stmt = select(DraftVersion).where(DraftVersion.draft_id == draft_id).order_by(DraftVersion.version)
    return list((await session.scalars(stmt)).all())


def _text_of(row: Draft | DraftVersion) -> DraftText:
    return DraftText(row.title, row.meta_title, row.meta_description, row.body_markdown)


async def _check_editable(session: AsyncSession, draft: Draft) -> None:
    if draft.superseded_at is not None:
        raise ConflictError(f"draft {draft.id} was regenerated; edit the task's new draft instead")
    decision = await session.get(ReviewDecision, draft.id)
    if decision is not None:
        raise ConflictError(
            f"draft {draft.id} was already {decision.decision}; drafts are edited before the decision",
            decision=decision.decision,
        )
    held = await runs.held_items(session, draft.site_id)
    if held is not None and held.stage == Stage.IMAGE_PROMPTS and draft.id in held.item_ids:
        raise ConflictError(held.reason(f"draft {draft.id}"), held_by_run=held.run_id, stage=held.stage)


async def _apply(session: AsyncSession, draft: Draft, text: DraftText, source: str, key_id: str | None) -> bool:
    """Store `text` as the draft's text and as its next version; False when nothing changes."""
    if text == _text_of(draft):
        return False
    versions = await versions_of(session, draft.id)
    if not versions:  # the first edit: the model's original becomes version 1
        session.add(DraftVersion(draft_id=draft.id, version=1, source="model", **asdict(_text_of(draft))))
    body = inert_markdown(text.body_markdown)
    if text.title != draft.title:
        draft.slug = slugify(text.title)
    draft.title, draft.meta_title, draft.meta_description = text.title, text.meta_title, text.meta_description
    draft.body_markdown, draft.body_html, draft.word_count = body, render_markdown(body), word_count(body)
    number = (versions[-1].version if versions else 1) + 1
    session.add(
        DraftVersion(
            draft_id=draft.id,
            version=number,
            source=source,
            title=draft.title,
            meta_title=draft.meta_title,
            meta_description=draft.meta_description,
            body_markdown=body,
            key_id=key_id,
        )
    )
    sites.log_line(session, draft.site_id, None, int(Stage.REVIEW), f"draft {draft.id} {source}: version {number}")
    await session.flush()
    return True


class DraftCuration:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], runs_service: runs.RunService) -> None:
        self._sessions = sessions
        self._runs = runs_service

    async def edit(self, account_id: str, draft_id: int, changes: dict[str, str], key_id: str | None) -> bool:
        """Change the given text fields (title, meta_title, meta_description, body_markdown)."""
        unknown = set(changes) - set(TEXT_FIELDS)
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        async with self._sessions.begin() as session:
            draft = await lock_draft(session, account_id, draft_id)
            await _check_editable(session, draft)
            current = asdict(_text_of(draft))
            return await _apply(session, draft, DraftText(**(current | changes)), "edit", key_id)

    async def restore(self, account_id: str, draft_id: int, version: int, key_id: str | None) -> bool:
        async with self._sessions.begin() as session:
            draft = await lock_draft(session, account_id, draft_id)
            await _check_editable(session, draft)
            found = next((v for v in await versions_of(session, draft_id) if v.version == version), None)
            if found is None:
                if version == 1:  # never edited: the draft is still the model's original
                    return False
                raise NotFoundError(f"draft {draft_id} has no version {version}")
            return await _apply(session, draft, _text_of(found), "restore", key_id)

    async def versions(self, account_id: str, draft_id: int) -> list[tuple[DraftVersion | Draft, str]]:
        """(row, source) of every text the draft has had; a draft never edited has its own text as version 1."""
        async with self._sessions() as session:
            draft = await session.scalar(
                select(Draft)
                .join(Site, Site.id == Draft.site_id)
                .where(Draft.id == draft_id, Site.account_id == account_id)
            )
            if draft is None:
                raise NotFoundError(f"draft {draft_id} does not exist")
            rows = await versions_of(session, draft_id)
            return [(v, v.source) for v in rows] if rows else [(draft, "model")]

    async def task_of(self, account_id: str, draft_id: int) -> int:
        async with self._sessions() as session:
            task_id = await session.scalar(
                select(Draft.task_id)
                .join(Site, Site.id == Draft.site_id)
                .where(Draft.id == draft_id, Site.account_id == account_id)
            )
        if task_id is None:
            raise NotFoundError(f"draft {draft_id} does not exist")
        return int(task_id)

    async def regenerate(self, account_id: str, draft_id: int) -> Regeneration:
        """Supersede a rejected draft and start a targeted run that writes its task's next draft."""
        async with self._sessions() as session:
            draft = await session.scalar(
                select(Draft)
                .join(Site, Site.id == Draft.site_id)
                .where(Draft.id == draft_id, Site.account_id == account_id)
            )
            if draft is None:
                raise NotFoundError(f"draft {draft_id} does not exist")
            site_id, task_id = draft.site_id, draft.task_id

        async def supersede(session: AsyncSession) -> None:
            locked = await lock_draft(session, account_id, draft_id)
            if locked.superseded_at is not None:
                raise ConflictError(f"draft {draft_id} was already regenerated")
            decision = await session.get(ReviewDecision, draft_id, with_for_update=True)
            if decision is None or decision.decision != "rejected":
                state = decision.decision if decision else "awaiting a decision"
                raise ConflictError(f"only a rejected draft is regenerated; draft {draft_id} is {state}")
            locked.superseded_at = utcnow()
            sites.log_line(session, site_id, None, int(Stage.REVIEW), f"draft {draft_id} superseded: regenerating")
            await session.flush()

        target = RunTarget(
            stage=int(Stage.DRAFTS),
            item_ids=[task_id],
            stages=[4, 5, 6, 7],
            reason=f"regenerate rejected draft {draft_id}",
        )
        run = await self._runs.start_targeted(account_id, site_id, target, "regenerate", prepare=supersede)
        return Regeneration(superseded_draft_id=draft_id, task_id=task_id, run=run)
