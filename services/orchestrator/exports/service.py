"""Export a draft, or every approved draft of a site, as a zip streamed while it is built:

    contentline-site-<site>/index.json     the drafts, their files and images (missing ones with the reason)
    contentline-site-<site>/index.csv      one row per draft (formula-safe cells: sites.export.render_csv)
    contentline-site-<site>/<id>-<slug>/article.md, article.html, images/<nn>-<placement>.<ext>

Drafts are read through the review domain (scoped to the caller's account); image bytes from the media store,
only from inside it. Nothing is held in memory but the member being added, so a site's whole catalogue streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.orchestrator.errors import NotFoundError
from services.orchestrator.exports.bundle import ImageFile, article_html, article_markdown, folder_name, image_name
from services.orchestrator.exports.zipstream import ZipStream
from services.orchestrator.review.service import DraftImage, DraftView, ReviewService
from services.orchestrator.sites.export import render_csv
from shared.contracts import utcnow

log = logging.getLogger(__name__)
INDEX_HEADER = ("draft_id", "title", "slug", "decision", "word_count", "quality_score", "markdown", "html", "images",
                "missing_images")  # fmt: skip
Member = tuple[str, bytes, bool]  # name in the zip, data, compress


class ExportService:
    def __init__(self, review: ReviewService, media_dir: Path) -> None:
        self._review = review
        self._media_root = media_dir.resolve()

    async def draft_zip(self, account_id: str, draft_id: int) -> tuple[str, AsyncIterator[bytes]]:
        """(the zip's base name, its bytes); 404 before anything is sent when the draft is not the caller's."""
        first = await self._review.draft(account_id, draft_id)
        name = f"contentline-draft-{draft_id}"
        return name, self._stream(account_id, name, {"draft_id": draft_id}, [draft_id], first)

    async def site_zip(self, account_id: str, site_id: str) -> tuple[str, AsyncIterator[bytes]]:
        ids = await self._review.approved_ids(account_id, site_id)
        name = f"contentline-site-{site_id}"
        return name, self._stream(account_id, name, {"site_id": site_id, "selection": "approved drafts"}, ids)

    async def _stream(
        self, account_id: str, root: str, about: dict[str, Any], ids: list[int], first: DraftView | None = None
    ) -> AsyncIterator[bytes]:
        archive = ZipStream()
        entries: list[dict[str, Any]] = []
        for draft_id in ids:
            try:
                view = first if first is not None and first.draft_id == draft_id else None
                view = view or await self._review.draft(account_id, draft_id)
            except NotFoundError:  # gone since the listing: said in the index, the rest still exports
                entries.append({"draft_id": draft_id, "skipped": "the draft no longer exists"})
                continue
            members, entry = await asyncio.to_thread(self._draft_members, root, view)
            for member in members:
                yield await asyncio.to_thread(archive.add, *member)
            entries.append(entry)
        index = {**about, "exported_at": utcnow().isoformat(), "drafts": entries}
        yield archive.add(f"{root}/index.json", json.dumps(index, ensure_ascii=False, indent=2).encode())
        rows = [[e.get(h, "") for h in INDEX_HEADER] for e in entries if "skipped" not in e]
        yield archive.add(f"{root}/index.csv", render_csv(INDEX_HEADER, rows).encode())
        yield archive.close()

    # ------------------------------------------------------------------ one draft (in a worker thread)
    def _draft_members(self, root: str, view: DraftView) -> tuple[list[Member], dict[str, Any]]:
        folder = f"{root}/{folder_name(view.draft_id, view.slug)}"
        images = [self._image(n, image) for n, image in enumerate(view.images, start=1)]
        markdown = article_markdown(
            view.draft_id, view.title, view.slug, view.meta_title, view.meta_description, view.body_markdown, images
        )
        page = article_html(view.title, view.meta_description, view.body_html, images)
        members: list[Member] = [
            (f"{folder}/article.md", markdown.encode(), True),
            (f"{folder}/article.html", page.encode(), True),
        ]
        members += [(f"{folder}/{i.href}", i.data, False) for i in images if i.data is not None]
        missing = [i for i in images if i.data is None]
        entry = {
            "draft_id": view.draft_id,
            "site_id": view.site_id,
            "run_id": view.run_id,
            "title": view.title,
            "slug": view.slug,
            "meta_title": view.meta_title,
            "meta_description": view.meta_description,
            "decision": view.decision,
            "word_count": view.word_count,
            "quality_score": view.quality_score,
            "folder": folder.split("/", 1)[1],
            "markdown": f"{folder.split('/', 1)[1]}/article.md",
            "html": f"{folder.split('/', 1)[1]}/article.html",
            "images": len(images) - len(missing),
            "missing_images": len(missing),
            "image_files": [
                {k: v for k, v in asdict(i).items() if k not in {"data", "source_path"}} | {"file": i.href}
                for i in images
            ],
        }
        return members, entry

    def _image(self, position: int, image: DraftImage) -> ImageFile:
        data, missing = self._read(image.path)
        if missing:
            log.warning("export: image %s (%s) of a draft is missing: %s", image.path, image.placement, missing)
        return ImageFile(
            placement=image.placement,
            alt_text=image.alt_text,
            caption=image.caption,
            source_path=image.path,
            name=image_name(position, image.placement, image.path),
            width=image.width,
            height=image.height,
            sha256=image.checksum_sha256,
            data=data,
            missing=missing,
        )

    def _read(self, path: str | None) -> tuple[bytes | None, str | None]:
        if path is None:
            return None, "not generated yet"
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self._media_root):
            return None, "outside the media store"  # a path in the database is no licence to read anything
        try:
            return resolved.read_bytes(), None
        except OSError as exc:
            return None, f"cannot be read: {exc.strerror or exc}"
