"""The review gate: the queue, a draft with its images, approve or reject, publish, and auto-approval.

A draft is decided once (approve or reject, with a note); only an approved draft can be published.
Decisions are the orchestrator's own rows; drafts and images stay untouched (their owners write them).
Publishing puts an `ArticlePublished` event on the outbox in the same transaction, for CMS connectors.
An approved draft goes to the publishing schedule when its site publishes automatically (publishing domain).
Auto-approval (a site's publishing setting) runs at the end of a run: drafts that pass the quality check are
approved, at most `max_approvals_per_run`, each decision recorded like a person's with its reason.
Every draft id is looked up through the caller's account: another account's draft is not found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.publishing import service as publishing
from services.orchestrator.publishing.scheduling import Policy
from services.orchestrator.publishing.views import PublishingView
from services.orchestrator.review import repository as repo
from services.orchestrator.sites import service as sites
from shared.contracts import ArticlePublished, PublishedImage, Stage, utcnow
from shared.db.models import Draft, ReviewDecision
from shared.delivery import Outbox
from shared.safe_html import sanitise_html
from shared.topics import ARTICLES_PUBLISHED

Decision = Literal["approved", "rejected"]
QUALITY_FLOOR = 70  # services.writer.quality's LOW_SCORE
SHOWN_IDS = 20


class Scored(Protocol):
    @property
    def quality_score(self) -> int: ...


def passes_quality(draft: Scored) -> bool:
    """The one quality check auto-approval and the queue's flag use (switch to the writer's stored verdict,
    e.g. a `quality_passed` column, here and only here; repo.candidates then loads it too)."""
    return draft.quality_score >= QUALITY_FLOOR


def _quality_reason(draft: Scored) -> str:
    verdict = "passes" if passes_quality(draft) else "is under"
    return f"quality score {draft.quality_score} {verdict} the floor {QUALITY_FLOOR}"


@dataclass
class AutoReview:
    """What auto-approval did at a run's review gate."""

    approved: list[int] = field(default_factory=list)
    below_floor: list[int] = field(default_factory=list)
    over_limit: list[int] = field(default_factory=list)
    scheduled: int = 0
    not_scheduled: int = 0

    def summary(self) -> str:
        parts = [f"auto-approval: {len(self.approved)} approved"]
        if self.scheduled or self.not_scheduled:
            parts.append(f"{self.scheduled} scheduled, {self.not_scheduled} without a slot (see the publishing queue)")
        if self.below_floor:
            parts.append(f"{len(self.below_floor)} under the quality floor wait for a person")
        if self.over_limit:
            parts.append(f"{len(self.over_limit)} over max_approvals_per_run wait for a person")
        return "; ".join(parts)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


async def auto_review(
    session: AsyncSession, policy: Policy, site_id: str, run_id: str | None, limit: int
) -> AutoReview | None:
    """Auto-approval at a run's review gate (the engine's transaction); None when the site has it off.

    Drafts ready for review are taken oldest first; those that pass the quality check are approved, at most
    `limit` (0 = no limit); the rest wait for a person. A draft a person decided meanwhile is left alone.
    """
    if not (await publishing.settings_of(session, site_id)).auto_approval_enabled:
        return None
    out = AutoReview()
    for draft in await repo.candidates(session, await sites.pending_ids(session, Stage.REVIEW, site_id)):
        if not passes_quality(draft):
            out.below_floor.append(draft.id)
        elif limit and len(out.approved) >= limit:
            out.over_limit.append(draft.id)
        elif await repo.add_decision(session, draft, "approved", f"auto-approved: {_quality_reason(draft)}", "auto"):
            why = _quality_reason(draft)
            sites.log_line(session, site_id, run_id, 7, f"draft {draft.id} approved automatically: {why}")
            out.approved.append(draft.id)
    if out.below_floor:
        sites.log_line(session, site_id, run_id, 7, f"auto-approval left drafts {_ids(out.below_floor)} for a person: "
                       f"their quality score is under the floor {QUALITY_FLOOR}")  # fmt: skip
    if out.over_limit:
        sites.log_line(session, site_id, run_id, 7, f"auto-approval left drafts {_ids(out.over_limit)} for a person: "
                       f"max_approvals_per_run ({limit}) reached")  # fmt: skip
    assigned = await publishing.on_approved(session, site_id, out.approved, run_id, policy)
    if assigned is not None:
        out.scheduled, out.not_scheduled = len(assigned.scheduled), len(assigned.waiting)
    return out
# Approved, and still approved once published (publishing moves the decision on).
APPROVED = ("approved", "published")


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
    decided_by: str | None = None  # person or auto
    publishing: PublishingView | None = None  # its place in the publishing schedule, once approved


def _not_found(draft_id: int) -> NotFoundError:
    return NotFoundError(f"draft {draft_id} does not exist")


class ReviewService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox, policy: Policy) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._policy = policy

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
                    low_quality=not passes_quality(d),
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
            decided_by=decision.decided_by if decision else None,
            publishing=await publishing.view_of(session, draft.id),
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
            if decision == "approved":
                await publishing.on_approved(session, draft.site_id, [draft_id], draft.run_id, self._policy)
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

    async def approved_ids(self, account_id: str, site_id: str) -> list[int]:
        """The site's approved (or since published) drafts, oldest first; 404 for another account's site."""
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            return await repo.decided_ids(session, account_id, site_id, APPROVED)
