"""Stage 5 (one prompt call per draft: a featured image + one per N sections) and stage 6 (images)."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

from PIL import Image as PILImage
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.imager import repository as repo
from services.imager.storage import MediaStorage, StoredObject
from shared import prompts
from shared.ai import AiClient, AiError, Usage, budgets
from shared.contracts import ImageUsage, ItemFailure, Stage, StageCommand, StageOptions
from shared.contracts import Usage as BatchUsage
from shared.db.models import Draft, ImagePrompt
from shared.db.session import autocommit
from shared.worker import BatchOutcome


class ImagePromptDraft(BaseModel):
    prompt: str = Field(
        min_length=20, max_length=600, description="What the image shows, its style; no text in the image"
    )
    alt_text: str = Field(min_length=5, max_length=200)
    caption: str = Field(min_length=5, max_length=250)


class ImagePromptSet(BaseModel):
    prompts: list[ImagePromptDraft] = Field(min_length=1, max_length=20)


PROMPT_TOKENS = budgets.chars(600 + 200 + 250) + 16  # one prompt at its bounds


def prompts_budget(count: int) -> int:
    return budgets.JSON_OVERHEAD + count * PROMPT_TOKENS


def enough(answer: ImagePromptSet, spots: list[str]) -> str | None:
    """Fewer prompts than placements: asked again, naming how many are missing."""
    if len(answer.prompts) < len(spots):
        return f"{len(answer.prompts)} image prompt(s) for {len(spots)} placements ({', '.join(spots)})"
    return None


def prompt_system(options: StageOptions) -> str:
    return prompts.render("image_prompts.system", options)


def placements(draft_markdown: str, sections_per_image: int) -> list[str]:
    """Featured image first, then one after every `sections_per_image`-th H2 section."""
    h2_count = len(re.findall(r"^##\s", draft_markdown, flags=re.M))
    return ["featured"] + [f"after-section-{n}" for n in range(sections_per_image, h2_count + 1, sections_per_image)]


def prompt_request(draft: Draft, spots: list[str], options: StageOptions) -> str:
    headings = re.findall(r"^##\s+(.+)$", draft.body_markdown, flags=re.M)
    return prompts.render(
        "image_prompts.user",
        options,
        title=draft.title,
        keywords=draft.title,
        sections="; ".join(headings[:12]),
        image_count=str(len(spots)),
        placements=", ".join(spots),
    )


def inspect_png(data: bytes) -> tuple[str, int, int]:
    """Mime type and dimensions; raises ValueError for bytes that are not an image."""
    with PILImage.open(io.BytesIO(data)) as img:
        img.verify()
    with PILImage.open(io.BytesIO(data)) as img:
        fmt = (img.format or "").lower()
        return f"image/{fmt}", img.width, img.height


class ImagerService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ai: AiClient, storage: MediaStorage) -> None:
        self._sessions = sessions
        self._ai = ai
        self._storage = storage

    def _keep(self, data: bytes, key: str) -> tuple[str, int, int, StoredObject] | AiError:
        """In a worker thread: the image checked, then stored (one hand-off from the event loop, not two)."""
        try:
            mime, width, height = inspect_png(data)
        except (ValueError, OSError) as exc:
            return AiError(f"provider returned an unreadable image: {exc}", transient=False)
        try:
            return mime, width, height, self._storage.put(key, data)
        except OSError as exc:  # e.g. a full disk: this image fails, the batch's other items stand
            return AiError(f"could not store the image: {exc}", transient=True)

    async def work(self, cmd: StageCommand) -> BatchOutcome:
        if cmd.stage is Stage.IMAGE_PROMPTS:
            return await self._prompts(cmd)
        return await self._images(cmd)

    async def _prompts(self, cmd: StageCommand) -> BatchOutcome:
        usage = Usage()
        async with autocommit(self._sessions) as session:  # a read only
            drafts, done = await repo.load_drafts(session, cmd.site_id, cmd.item_ids)
        outcome = BatchOutcome(skipped=len(done), calls=usage.records)
        found = {d.id for d in drafts}
        outcome.failures += [
            ItemFailure(item_id=i, reason="draft not found for this site") for i in cmd.item_ids if i not in found
        ]
        # The orchestrator never plans a held-back draft into stage 5; a command that names one anyway (an old
        # plan, a hand-made command) gets no prompts, so no image credits go to a draft that may not be used.
        held = [d for d in drafts if d.id not in done and not d.quality_passed]
        outcome.failures += [
            ItemFailure(item_id=d.id, reason="held back by the quality gate (see the draft's quality notes)")
            for d in held
        ]
        todo = [d for d in drafts if d.id not in done and d.quality_passed]

        async def one(draft: Draft) -> list[dict[str, Any]] | AiError:
            spots = placements(draft.body_markdown, cmd.options.sections_per_image)
            try:
                answer = await self._ai.structured(
                    prompt_system(cmd.options),
                    prompt_request(draft, spots, cmd.options),
                    ImagePromptSet,
                    "image-prompts",
                    usage,
                    max_tokens=prompts_budget(len(spots)),
                    check=lambda reply: enough(reply, spots),
                )
            except AiError as exc:
                return exc
            if len(answer.prompts) < len(spots):
                return AiError(f"asked for {len(spots)} image prompts, got {len(answer.prompts)}", transient=False)
            return [
                {
                    "site_id": cmd.site_id,
                    "draft_id": draft.id,
                    "run_id": cmd.run_id,
                    "position": pos,
                    "placement": spot,
                    "prompt": p.prompt.strip(),
                    "alt_text": p.alt_text.strip()[:300],
                    "caption": p.caption.strip()[:300],
                }
                for pos, (spot, p) in enumerate(zip(spots, answer.prompts, strict=False))
            ]

        rows: list[dict[str, Any]] = []
        for draft, answer in zip(todo, await asyncio.gather(*(one(d) for d in todo)), strict=True):
            if isinstance(answer, AiError):
                outcome.failures.append(ItemFailure(item_id=draft.id, reason=answer.reason))
            else:
                rows += answer
                outcome.processed += 1

        async def persist(session: AsyncSession) -> None:
            outcome.created = await repo.insert_prompts(session, rows)

        outcome.persist = persist
        outcome.usage = BatchUsage(
            model_calls=len(usage.records),
            prompt_tokens=sum(r.prompt_tokens for r in usage.records),
            completion_tokens=sum(r.completion_tokens for r in usage.records),
            image_prompts=len(rows),
        )
        return outcome

    async def _images(self, cmd: StageCommand) -> BatchOutcome:
        usage = Usage()
        async with autocommit(self._sessions) as session:  # a read only
            prompts, done = await repo.load_prompts(session, cmd.site_id, cmd.item_ids)
        outcome = BatchOutcome(skipped=len(done), calls=usage.records)
        found = {p.id for p in prompts}
        outcome.failures += [
            ItemFailure(item_id=i, reason="image prompt not found for this site")
            for i in cmd.item_ids
            if i not in found
        ]
        todo = [p for p in prompts if p.id not in done]
        size, quality = cmd.options.image_size, cmd.options.image_quality

        async def one(p: ImagePrompt) -> dict[str, Any] | AiError:
            try:
                data = await self._ai.image_png(p.prompt, size, quality, "image", usage)
            except AiError as exc:
                return exc
            kept = await asyncio.to_thread(self._keep, data, f"{cmd.site_id}/{p.draft_id}/{p.position}-{p.id}.png")
            if isinstance(kept, AiError):
                return kept
            mime, width, height, stored = kept
            return {
                "site_id": cmd.site_id,
                "prompt_id": p.id,
                "draft_id": p.draft_id,
                "run_id": cmd.run_id,
                "path": stored.path,
                "checksum_sha256": stored.checksum_sha256,
                "size_bytes": stored.size_bytes,
                "mime": mime,
                "width": width,
                "height": height,
            }

        rows: list[dict[str, Any]] = []
        for prompt, answer in zip(todo, await asyncio.gather(*(one(p) for p in todo)), strict=True):
            if isinstance(answer, AiError):
                outcome.failures.append(ItemFailure(item_id=prompt.id, reason=answer.reason))
            else:
                rows.append(answer)
        outcome.processed = len(rows)

        async def persist(session: AsyncSession) -> None:
            outcome.created = await repo.insert_images(session, rows)

        outcome.persist = persist
        outcome.usage = BatchUsage(
            model_calls=len(usage.records),
            images=[ImageUsage(size=size, quality=quality, count=len(rows))] if rows else [],
        )
        return outcome
