"""HTML that is safe to store, publish and show, from text that keywords and models wrote.

Keyword and model text reaches HTML only through Markdown, and three layers keep it inert:
1. `inert_markdown`: the Markdown we store and publish carries no raw HTML (a `<` that would open a tag
   becomes `&lt;`, outside code), no link to a scheme other than http(s)/mailto and no attribute list that
   sets a handler, so even a renderer that passes raw HTML through (most do) shows `<script>` as text.
2. `render_markdown`: Python-Markdown with its raw-HTML handling switched off: a tag in the source is text.
3. `sanitise_html`: an allowlist (nh3, i.e. ammonia): the tags Markdown produces, a few attributes, http(s)
   and mailto links, images from our media store (paths) only; everything else is dropped. Every
   `body_html` passes it before it is stored; a publisher or dashboard that builds HTML calls it too.
Plain-text fields (title, meta, alt text, captions) stay plain text in the database and in events; whoever
puts them into HTML escapes them (`html.escape`), as any template engine does.
"""

from __future__ import annotations

import html
import re
from functools import cache

import markdown
import nh3
from markdown.extensions import Extension

ALLOWED_TAGS = frozenset(
    {
        *("p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code"),
        *("strong", "em", "b", "i", "s", "del", "ins", "sub", "sup", "abbr", "a", "img"),
        *("ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "th", "td"),
        *("figure", "figcaption"),
    }
)
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Extensions the writer's Markdown uses. Not `extra`: its attr_list and md_in_html turn source text into
# attributes and raw HTML, which is what model text must never do.
EXTENSIONS = ("tables", "fenced_code", "def_list", "abbr")

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.I)


def _media_path_only(element: str, attribute: str, value: str) -> str | None:
    # Images come from our media store (paths); a remote image in model text is a tracking pixel at best.
    if element == "img" and attribute == "src":
        squeezed = "".join(value.split())
        return value if squeezed and not squeezed.startswith("//") and not _SCHEME.match(squeezed) else None
    return value


@cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_media_path_only,
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
        link_rel="noopener noreferrer",
    )


def sanitise_html(fragment: str) -> str:
    """The allowlist pass every stored or published HTML fragment goes through (idempotent)."""
    return _cleaner().clean(fragment)


class _RawHtmlAsText(Extension):  # type: ignore[misc]  # markdown ships no types
    """Python-Markdown's own recipe for escaping raw HTML: drop the block and inline HTML processors."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


def render_markdown(source: str) -> str:
    """Markdown to HTML that is safe to store: raw HTML in the source comes out as text, then the allowlist."""
    converter = markdown.Markdown(
        extensions=[*EXTENSIONS, _RawHtmlAsText()],
        extension_configs={"tables": {"use_align_attribute": True}},
    )
    return sanitise_html(converter.convert(source))


# A `<` that would open a tag, comment or processing instruction; autolinks `<https://...>` stay links.
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])(?!(?:https?|mailto):[^\s<>]*>)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# Inline link/image destinations and reference definitions: `](dest` and `[label]: dest`.
_DESTINATION = re.compile(r"(\]\(\s*<?|^ {0,3}\[[^\]]+\]:\s*<?)((?:[^\s()<>]|\([^\s()<>]*\))+)", re.M)
_INVISIBLE_IN_URL = re.compile(r"[\x00-\x20\x7f]")
# An attribute list (`{onclick=...}`, Python-Markdown's attr_list, kramdown, Pandoc) that would set an
# event handler, a style or a URL: its brace is escaped, so it stays text.
_ATTR_LIST = re.compile(r"\{(?=:?[^{}\n]*?\b(?:on\w+|style|href|src|srcset|action|formaction)\s*=)", re.I)


def _safe_destination(match: re.Match[str]) -> str:
    # Browsers drop tabs/newlines in URLs and decode entities in attributes: judge the URL they would see.
    url = _INVISIBLE_IN_URL.sub("", html.unescape(match[2]))
    scheme = _SCHEME.match(url)
    if scheme and scheme[1].lower() not in URL_SCHEMES:
        return match[1] + "#"
    return match[0]


def _inert_text(text: str) -> str:
    return _ATTR_LIST.sub(r"\\{", _TAG_OPEN.sub("&lt;", _DESTINATION.sub(_safe_destination, text)))


def _inert_line(line: str) -> str:
    out, last = [], 0
    for span in _CODE_SPAN.finditer(line):  # code spans show their text verbatim: leave them be
        out += [_inert_text(line[last : span.start()]), span[0]]
        last = span.end()
    out.append(_inert_text(line[last:]))
    return "".join(out)


def inert_markdown(source: str) -> str:
    """Markdown with no raw HTML and no unsafe link schemes, safe for any Markdown renderer.

    Fenced code and code spans are left as written (they render as text anyway). Plain text is unchanged.
    """
    lines, fence = [], ""
    for line in source.split("\n"):
        opened = _FENCE.match(line)
        if fence:
            if opened and opened[1][0] == fence[0] and len(opened[1]) >= len(fence) and not line.strip(" `~"):
                fence = ""
            lines.append(line)
        elif opened:
            fence = opened[1]
            lines.append(line)
        else:
            lines.append(_inert_line(line))
    return "\n".join(lines)
