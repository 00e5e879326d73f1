"""What one draft becomes in an export: `article.md`, `article.html` and its images, placed where the imager
put them (the featured image first, `after-section-N` after the N-th H2 section). Pure functions.

The HTML passes shared.safe_html.sanitise_html; titles, alt texts and captions are plain text and escaped here.
Image references point into the zip (`images/<file>`): the figures we add, and any image in the body whose
path is one of the draft's media-store files. Any other <img> in the HTML is dropped (it points into a server's
media store, which the zip does not have).
"""

from __future__ import annotations

import html
import json
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.safe_html import inert_markdown, sanitise_html

_H2_MD = re.compile(r"^## ", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_H2_HTML = re.compile(r"<h2[\s>]", re.IGNORECASE)
_IMG_HTML = re.compile(r'<img\b[^>]*?\bsrc="([^"]*)"[^>]*>', re.IGNORECASE)
_IMG_MD = re.compile(r"(!\[[^\]\n]*\]\()([^)\s]+)")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ImageFile:
    """An image of the draft as it goes into the zip; `data` None when it could not be read (`missing` says why)."""

    placement: str
    alt_text: str
    caption: str
    source_path: str | None  # the media-store path the database names
    name: str  # the file name inside the draft's images/ folder
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    data: bytes | None = None
    missing: str | None = None

    @property
    def href(self) -> str:
        return f"images/{self.name}"


def folder_name(draft_id: int, slug: str) -> str:
    """`<id>-<slug>`: unique in the zip even when two drafts share a slug, and safe on every file system."""
    clean = _SLUG.sub("-", slug.lower()).strip("-")[:80].strip("-")
    return f"{draft_id}-{clean}" if clean else str(draft_id)


def image_name(position: int, placement: str, source_path: str | None) -> str:
    suffix = posixpath.splitext(source_path or "")[1].lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".png"
    return f"{position:02d}-{_SLUG.sub('-', placement.lower()).strip('-') or 'image'}{suffix}"


def _section(placement: str) -> int | None:
    match = re.fullmatch(r"after-section-(\d+)", placement)
    return int(match.group(1)) if match else None


def _insert_at(text: str, starts: Sequence[int], blocks: Iterable[tuple[str, str]]) -> str:
    """`blocks` are (placement, text): each goes before heading N+1 for after-section-N, else at the end."""
    inserts: list[tuple[int, int, str]] = []
    for order, (placement, block) in enumerate(blocks):
        section = _section(placement)
        at = starts[section] if section is not None and section < len(starts) else len(text)
        inserts.append((at, order, block))
    out, last = [], 0
    for at, _, block in sorted(inserts):
        out += [text[last:at], block]
        last = at
    out.append(text[last:])
    return "".join(out)


def _md_heading_starts(markdown: str) -> list[int]:
    starts, fence, offset = [], "", 0
    for line in markdown.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if fence:
            fence = "" if opened and opened[1][0] == fence[0] else fence
        elif opened:
            fence = opened[1]
        elif line.startswith("## "):
            starts.append(offset)
        offset += len(line)
    return starts


def _md_text(text: str) -> str:
    """Plain text as Markdown text: one line, brackets escaped, nothing that could become markup."""
    return inert_markdown(" ".join(text.split()).replace("[", "\\[").replace("]", "\\]"))


def _md_image(image: ImageFile) -> str:
    caption = f"\n*{_md_text(image.caption)}*" if image.caption.strip() else ""
    return f"![{_md_text(image.alt_text)}]({image.href}){caption}\n\n"


def _by_source(images: Sequence[ImageFile]) -> dict[str, str]:
    """Media-store path and its file name → the image's place in the zip (only images that made it in)."""
    out: dict[str, str] = {}
    for image in images:
        if image.source_path and image.data is not None:
            out[image.source_path] = image.href
            out.setdefault(posixpath.basename(image.source_path), image.href)
    return out


def article_markdown(
    draft_id: int, title: str, slug: str, meta_title: str, meta_description: str, body: str,
    images: Sequence[ImageFile],
) -> str:  # fmt: skip
    """Front matter (JSON strings are YAML strings), the title, the featured image, the body with its images."""
    present = [i for i in images if i.data is not None]
    featured = "".join(_md_image(i) for i in present if i.placement == "featured")
    known = _by_source(images)
    body = _IMG_MD.sub(lambda m: m[1] + known.get(m[2], known.get(posixpath.basename(m[2]), m[2])), body)
    placed = [(i.placement, "\n" + _md_image(i)) for i in present if i.placement != "featured"]
    body = _insert_at(body.rstrip() + "\n", _md_heading_starts(body), placed)
    front = "\n".join(
        f"{name}: {json.dumps(value, ensure_ascii=False)}"
        for name, value in (
            ("title", title), ("slug", slug), ("meta_title", meta_title), ("meta_description", meta_description),
            ("draft_id", draft_id),
        )
    )  # fmt: skip
    return f"---\n{front}\n---\n\n# {_md_text(title)}\n\n{featured}{body}"


def _figure(image: ImageFile) -> str:
    size = f' width="{image.width}" height="{image.height}"' if image.width and image.height else ""
    caption = f"<figcaption>{html.escape(image.caption)}</figcaption>" if image.caption.strip() else ""
    img = f'<img src="{html.escape(image.href)}" alt="{html.escape(image.alt_text)}"{size}>'
    return f"<figure>{img}{caption}</figure>\n"


def article_html(title: str, meta_description: str, body_html: str, images: Sequence[ImageFile], lang: str = "") -> str:
    """A standalone page: the sanitised body with its figures, images from the zip, title and meta escaped."""
    present = [i for i in images if i.data is not None]
    known = _by_source(images)

    def local(match: re.Match[str]) -> str:
        src = html.unescape(match[1])
        href = known.get(src) or known.get(posixpath.basename(src.split("?", 1)[0]))
        if href is None:
            return "" if not src.startswith("images/") else match[0]  # a server path the zip does not have
        return match[0].replace(f'src="{match[1]}"', f'src="{html.escape(href)}"')

    body = _IMG_HTML.sub(local, sanitise_html(body_html))
    placed = [(i.placement, _figure(i)) for i in present if i.placement != "featured"]
    body = _insert_at(body, [m.start() for m in _H2_HTML.finditer(body)], placed)
    featured = "".join(_figure(i) for i in present if i.placement == "featured")
    content = sanitise_html(featured + body)
    lang_attr = f' lang="{html.escape(lang)}"' if re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", lang) else ""
    return (
        f"<!DOCTYPE html>\n<html{lang_attr}>\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}</title>\n"
        f'<meta name="description" content="{html.escape(meta_description)}">\n</head>\n<body>\n<article>\n'
        f"<h1>{html.escape(title)}</h1>\n{content}\n</article>\n</body>\n</html>\n"
    )
