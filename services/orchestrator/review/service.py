"""The review gate's human side: the queue, a draft with its images, approve or reject, publish.

A draft is decided once (approve or reject, with a note); only an approved draft can be published.
Decisions are the orchestrator's own rows; drafts and images stay untouched (their owners write them).
Publishing puts an `ArticlePublished` event on the outbox in the same transaction, for CMS connectors.
Every draft id is looked up through the caller's account: another account's draft is not found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.review import repository as repo
from services.orchestrator.sites import service as sites
from shared.contracts import ArticlePublished, PublishedImage, Stage, utcnow
from shared.db.models import Draft, ReviewDecision
from shared.delivery import Outbox
from shared.safe_html import sanitise_html
from shared.topics import ARTICLES_PUBLISHED

Decision = Literal["approved", "rejected"]


class QueueItem(BaseModel):
    draft_id: int
    title: str
    slug: str
    word_count: int
    target_words: int
    quality_score: int
    quality_notes: list[str]
    low_quality: bool
    images: int
    image_prompts: int
    run_id: str | None
    created_at: AwareDatetime


class DraftImage(BaseModel):
    placement: str
    prompt: str
    alt_text: str
    caption: str
    path: str | None
    width: int | None
    height: int | None
    checksum_sha256: str | None


class QualityHold(BaseModel):
    """A draft the quality gate held back (the reasons are its `quality_notes`): no images, not in the queue."""

    failed_runs: int = Field(description="Runs in a row whose draft for this task was held back or failed")
    parked: bool = Field(description="True: no run writes it again until its task (stage 4) is un-parked")
    next_step: str


class DraftView(BaseModel):
    draft_id: int
    site_id: str
    run_id: str | None
    title: str
    slug: str
    meta_title: str
    meta_description: str
    word_count: int
    target_words: int
    quality_score: int
    quality_notes: list[str]
    quality_passed: bool
    held_back: QualityHold | None = Field(description="Set while the quality gate holds the draft back")
    body_markdown: str
    body_html: str
    images: list[DraftImage]
    decision: str | None
    note: str | None


def _not_found(draft_id: int) -> NotFoundError:
    return NotFoundError(f"draft {draft_id} does not exist")


class ReviewService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def queue(self, account_id: str, site_id: str, limit: int) -> list[QueueItem]:
        """Drafts awaiting a decision whose images are all there, oldest first."""
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            ids = await sites.pending_ids(session, Stage.REVIEW, site_id, limit)
            return [
                QueueItem(
                    draft_id=d.id,
                    title=d.title,
                    slug=d.slug,
                    word_count=d.word_count,
                    target_words=d.target_words,
                    quality_score=d.quality_score,
                    quality_notes=[str(n) for n in d.quality_notes],
                    low_quality=d.quality_score < 70,
                    images=images,
                    image_prompts=prompts,
                    run_id=d.run_id,
                    created_at=d.created_at,
                )
                for d, images, prompts in await repo.queue_rows(session, account_id, ids)
            ]

    async def draft(self, account_id: str, draft_id: int) -> DraftView:
        async with self._sessions() as session:
            draft = await repo.get_draft(session, account_id, draft_id)
            if draft is None:
                raise _not_found(draft_id)
            return await self._view(session, draft)

    @staticmethod
    async def _view(session: AsyncSession, draft: Draft) -> DraftView:
        images = await repo.images_of(session, draft.id)
        decision = await repo.decision(session, draft.id)
        hold: QualityHold | None = None
        if not draft.quality_passed:
            failing = await sites.failing_item(session, int(Stage.DRAFTS), draft.task_id)
            parked = failing is not None and failing.parked_at is not None
            hold = QualityHold(
                failed_runs=failing.failed_runs if failing else 1,
                parked=parked,
                next_step=f"parked: un-park writer task {draft.task_id} (stage 4) to have it written again"
                if parked
                else "the next run writes it again and replaces this draft",
            )
        return DraftView(
            draft_id=draft.id,
            site_id=draft.site_id,
            run_id=draft.run_id,
            title=draft.title,
            slug=draft.slug,
            meta_title=draft.meta_title,
            meta_description=draft.meta_description,
            word_count=draft.word_count,
            target_words=draft.target_words,
            quality_score=draft.quality_score,
            quality_notes=[str(n) for n in draft.quality_notes],
            quality_passed=draft.quality_passed,
            held_back=hold,
            body_markdown=draft.body_markdown,
            body_html=sanitise_html(draft.body_html),  # drafts stored before sanitising existed too
            images=[
                DraftImage(
                    placement=p.placement,
                    prompt=p.prompt,
                    alt_text=p.alt_text,
                    caption=p.caption,
                    path=images[p.id].path if p.id in images else None,
                    width=images[p.id].width if p.id in images else None,
                    height=images[p.id].height if p.id in images else None,
                    checksum_sha256=images[p.id].checksum_sha256 if p.id in images else None,
                )
                for p in await repo.prompts_of(session, draft.id)
            ],
            decision=decision.decision if decision else None,
            note=decision.note if decision else None,
        )

    async def decide(self, account_id: str, draft_id: int, decision: Decision, note: str) -> DraftView:
        async with self._sessions.begin() as session:
            draft = await repo.get_draft(session, account_id, draft_id)
            if draft is None:
                raise _not_found(draft_id)
            existing = await repo.decision(session, draft_id, lock=True)
            if existing is not None:
                raise ConflictError(f"draft {draft_id} was already {existing.decision}", decision=existing.decision)
            if not await repo.images_complete(session, draft_id):
                raise ConflictError(f"draft {draft_id} is not ready for review: its images are not all generated")
            session.add(ReviewDecision(draft_id=draft_id, site_id=draft.site_id, decision=decision, note=note))
            sites.log_line(session, draft.site_id, draft.run_id, 7, f"draft {draft_id} {decision}: {note[:200]}")
            await session.flush()
            return await self._view(session, draft)

    async def publish(self, account_id: str, draft_id: int) -> DraftView:
        async with self._sessions.begin() as session:
            draft = await repo.get_draft(session, account_id, draft_id)
            if draft is None:
                raise _not_found(draft_id)
            existing = await repo.decision(session, draft_id, lock=True)
            if existing is None:
                raise ConflictError(f"draft {draft_id} must be approved before it is published")
            if existing.decision != "approved":
                raise ConflictError(f"draft {draft_id} is {existing.decision}; only approved drafts are published")
            existing.decision, existing.decided_at = "published", utcnow()
            event = await self._published_event(session, draft, existing.decided_at)
            self._outbox.add(session, ARTICLES_PUBLISHED, event.site_id, event)
            sites.log_line(session, existing.site_id, None, 7, f"draft {draft_id} published")
            await session.flush()
            view = await self._view(session, draft)
        self._outbox.committed()
        return view

    @staticmethod
    async def _published_event(session: AsyncSession, draft: Draft, published_at: datetime) -> ArticlePublished:
        return ArticlePublished(
            site_id=draft.site_id,
            run_id=draft.run_id,
            draft_id=draft.id,
            title=draft.title,
            slug=draft.slug,
            meta_title=draft.meta_title,
            meta_description=draft.meta_description,
            body_markdown=draft.body_markdown,
            body_html=sanitise_html(draft.body_html),  # drafts stored before sanitising existed too
            word_count=draft.word_count,
            quality_score=draft.quality_score,
            images=[
                PublishedImage(
                    placement=prompt.placement,
                    alt_text=prompt.alt_text,
                    caption=prompt.caption,
                    path=image.path,
                    mime=image.mime,
                    width=image.width,
                    height=image.height,
                    size_bytes=image.size_bytes,
                    checksum_sha256=image.checksum_sha256,
                )
                for prompt, image in await repo.published_images(session, draft.id)
            ],
            published_at=published_at,
        )
