"""What a draft becomes on WordPress: sanitised HTML with its images placed, categories, tags, SEO fields.

Pure functions (no I/O), so every rule here is unit-tested without a site.
"""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import nh3

from shared.contracts import CategoryMapping, TagMapping

MARKER_KEY = "contentline_key"  # the post/attachment meta the contentline mu-plugin exposes

# Article markup the writer produces (Markdown "extra"), plus the figures we add. Scripts, styles, iframes,
# event handlers and javascript: URLs are dropped: the body comes from a model, and WordPress would keep them
# for an administrator (unfiltered_html).
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "figcaption", "figure",
    "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "ol", "p", "pre", "s", "span", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "class"},
    "figure": {"class"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "abbr": {"title"},
}
_H2 = re.compile(r"<h2[\s>]", re.IGNORECASE)
_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]*)(")', re.IGNORECASE)
_SEO_FIELDS = (
    ("Yoast SEO", "_yoast_wpseo_title", "_yoast_wpseo_metadesc"),
    ("Rank Math", "rank_math_title", "rank_math_description"),
)


def draft_marker(site_id: str, draft_id: int) -> str:
    return f"draft:{site_id}:{draft_id}"


def image_marker(site_id: str, image_id: int) -> str:
    return f"image:{site_id}:{image_id}"


def sanitise(body_html: str) -> str:
    return nh3.clean(body_html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"})


@dataclass(frozen=True)
class PlacedImage:
    """An uploaded image and where it goes: `featured`, or `after-section-N` (after the N-th H2 section)."""

    placement: str
    media_id: int
    url: str
    alt: str
    caption: str
    width: int | None = None
    height: int | None = None


def figure(image: PlacedImage) -> str:
    size = f' width="{image.width}" height="{image.height}"' if image.width and image.height else ""
    caption = f"<figcaption>{html.escape(image.caption)}</figcaption>" if image.caption else ""
    return (
        f'<figure class="wp-block-image"><img src="{html.escape(image.url)}" alt="{html.escape(image.alt)}"'
        f'{size} class="wp-image-{image.media_id}"/>{caption}</figure>'
    )


def _section_after(placement: str) -> int | None:
    match = re.fullmatch(r"after-section-(\d+)", placement)
    return int(match.group(1)) if match else None


def place_images(body_html: str, images: Iterable[PlacedImage]) -> str:
    """The body with each non-featured image as a figure where its placement says; the featured image is the
    post's featured image, not part of the body. An unknown placement, or a section past the last, goes last."""
    starts = [m.start() for m in _H2.finditer(body_html)]
    inserts: list[tuple[int, int, str]] = []
    for order, image in enumerate(images):
        if image.placement == "featured":
            continue
        section = _section_after(image.placement)
        # Section N ends where heading N+1 begins (the first heading opens section 1).
        at = starts[section] if section is not None and section < len(starts) else len(body_html)
        inserts.append((at, order, figure(image)))
    out, last = [], 0
    for at, _, block in sorted(inserts):
        out += [body_html[last:at], block, "\n"]
        last = at
    out.append(body_html[last:])
    return "".join(out)


def rewrite_image_sources(body_html: str, uploaded: Mapping[str, str]) -> str:
    """Point <img src> at the uploaded copies: `uploaded` maps a media-store path (or its file name) to its URL."""
    by_name = {posixpath.basename(path): url for path, url in uploaded.items()}

    def swap(match: re.Match[str]) -> str:
        src = html.unescape(match.group(2))
        url = uploaded.get(src) or by_name.get(posixpath.basename(src.split("?", 1)[0]))
        return match.group(1) + html.escape(url) + match.group(3) if url else match.group(0)

    return _SRC.sub(swap, body_html)


def _unique(names: Iterable[str], limit: int | None = None) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        clean = " ".join(name.split())[:200]
        if clean and clean.casefold() not in seen:
            seen[clean.casefold()] = clean
    values = list(seen.values())
    return values if limit is None else values[:limit]


def term_key(name: str) -> str:
    """How WordPress compares term names: HTML entities decoded, case and spacing ignored."""
    return " ".join(html.unescape(name).split()).casefold()


def categories_for(mapping: CategoryMapping, cluster_name: str | None) -> list[str]:
    names = list(mapping.default)
    if cluster_name:
        mapped = {k.casefold(): v for k, v in mapping.by_cluster.items()}.get(cluster_name.casefold())
        if mapped is not None:
            names += mapped
        elif mapping.cluster_as_category:
            names.append(cluster_name)
    return _unique(names)


def tags_for(mapping: TagMapping, keywords: Iterable[str]) -> list[str]:
    renames = {k.casefold(): v for k, v in mapping.rename.items()}
    names = []
    if mapping.from_keywords:
        for keyword in keywords:
            tag = renames.get(keyword.casefold(), keyword)
            if tag.strip():
                names.append(tag)
    return _unique([*names, *mapping.extra], mapping.max_tags)


def seo_meta(meta_keys: set[str], title: str, description: str) -> tuple[dict[str, str], str | None]:
    """The SEO fields to set and, when there are none, the note that says why they were skipped."""
    for _plugin, title_key, description_key in _SEO_FIELDS:
        if {title_key, description_key} <= meta_keys:
            return {title_key: title, description_key: description}, None
    return {}, (
        "SEO title and description skipped: the site exposes no Yoast SEO or Rank Math fields "
        "(install one of them and the contentline mu-plugin)"
    )
