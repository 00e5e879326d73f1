"""The review gate's human side: read a draft with its images, approve or reject it, publish it.

A draft is decided once (approve or reject, with a note); only an approved draft can be published.
Decisions are the orchestrator's own rows; drafts and images stay untouched (their owners write them).
Publishing puts an `ArticlePublished` event on the outbox in the same transaction, for CMS connectors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator import repository as repo
from services.orchestrator.service import ConflictError, NotFoundError
from shared.contracts import ArticlePublished, PublishedImage, utcnow
from shared.db.models import Draft, Image, ImagePrompt, ReviewDecision
from shared.delivery import Outbox
from shared.topics import ARTICLES_PUBLISHED

Decision = Literal["approved", "rejected"]


class ReviewService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def draft(self, draft_id: int) -> dict[str, Any]:
        async with self._sessions() as session:
            draft = await session.get(Draft, draft_id)
            if draft is None:
                raise NotFoundError(f"draft {draft_id} does not exist")
            prompts = (
                await session.scalars(
                    select(ImagePrompt).where(ImagePrompt.draft_id == draft_id).order_by(ImagePrompt.position)
                )
            ).all()
            images = {
                i.prompt_id: i for i in (await session.scalars(select(Image).where(Image.draft_id == draft_id))).all()
            }
            decision = await session.get(ReviewDecision, draft_id)
        return {
            "draft_id": draft.id,
            "site_id": draft.site_id,
            "run_id": draft.run_id,
            "title": draft.title,
            "slug": draft.slug,
            "meta_title": draft.meta_title,
            "meta_description": draft.meta_description,
            "word_count": draft.word_count,
            "target_words": draft.target_words,
            "quality_score": draft.quality_score,
            "quality_notes": draft.quality_notes,
            "body_markdown": draft.body_markdown,
            "body_html": draft.body_html,
            "images": [
                {
                    "placement": p.placement,
                    "prompt": p.prompt,
                    "alt_text": p.alt_text,
                    "caption": p.caption,
                    "path": images[p.id].path if p.id in images else None,
                    "width": images[p.id].width if p.id in images else None,
                    "height": images[p.id].height if p.id in images else None,
                    "checksum_sha256": images[p.id].checksum_sha256 if p.id in images else None,
                }
                for p in prompts
            ],
            "decision": decision.decision if decision else None,
            "note": decision.note if decision else None,
        }

    async def decide(self, draft_id: int, decision: Decision, note: str) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            draft = await session.get(Draft, draft_id)
            if draft is None:
                raise NotFoundError(f"draft {draft_id} does not exist")
            existing = await session.get(ReviewDecision, draft_id, with_for_update=True, populate_existing=True)
            if existing is not None:
                raise ConflictError(f"draft {draft_id} was already {existing.decision}", decision=existing.decision)
            if not await self._images_complete(session, draft_id):
                raise ConflictError(f"draft {draft_id} is not ready for review: its images are not all generated")
            session.add(ReviewDecision(draft_id=draft_id, site_id=draft.site_id, decision=decision, note=note))
            repo.log_line(session, draft.site_id, draft.run_id, 7, f"draft {draft_id} {decision}: {note[:200]}")
        return await self.draft(draft_id)

    async def publish(self, draft_id: int) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            existing = await session.get(ReviewDecision, draft_id, with_for_update=True, populate_existing=True)
            if existing is None:
                if await session.get(Draft, draft_id) is None:
                    raise NotFoundError(f"draft {draft_id} does not exist")
                raise ConflictError(f"draft {draft_id} must be approved before it is published")
            if existing.decision != "approved":
                raise ConflictError(f"draft {draft_id} is {existing.decision}; only approved drafts are published")
            existing.decision, existing.decided_at = "published", utcnow()
            event = await self._published_event(session, draft_id, existing.decided_at)
            self._outbox.add(session, ARTICLES_PUBLISHED, event.site_id, event)
            repo.log_line(session, existing.site_id, None, 7, f"draft {draft_id} published")
        self._outbox.committed()
        return await self.draft(draft_id)

    @staticmethod
    async def _published_event(session: AsyncSession, draft_id: int, published_at: datetime) -> ArticlePublished:
        draft = await session.get_one(Draft, draft_id)
        rows = await session.execute(
            select(ImagePrompt, Image)
            .join(Image, Image.prompt_id == ImagePrompt.id)
            .where(ImagePrompt.draft_id == draft_id)
            .order_by(ImagePrompt.position)
        )
        return ArticlePublished(
            site_id=draft.site_id,
            run_id=draft.run_id,
            draft_id=draft.id,
            title=draft.title,
            slug=draft.slug,
            meta_title=draft.meta_title,
            meta_description=draft.meta_description,
            body_markdown=draft.body_markdown,
            body_html=draft.body_html,
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
                for prompt, image in rows.tuples()
            ],
            published_at=published_at,
        )

    @staticmethod
    async def _images_complete(session: AsyncSession, draft_id: int) -> bool:
        prompts = set((await session.scalars(select(ImagePrompt.id).where(ImagePrompt.draft_id == draft_id))).all())
        done = set((await session.scalars(select(Image.prompt_id).where(Image.draft_id == draft_id))).all())
        return bool(prompts) and prompts <= done
