"""What counts as executable markup, judged by the standard library's HTML parser (not by nh3, the sanitiser
under test): script-capable elements, event-handler and style attributes, and URLs with a script or data
scheme, after entity decoding and with the control characters and whitespace browsers ignore removed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

DANGEROUS_TAGS = frozenset(
    {
        *("script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "meta", "link"),
        *("form", "input", "button", "textarea", "select", "svg", "math", "template", "noscript", "xmp"),
        *("video", "audio", "source", "details", "marquee", "isindex", "body", "html", "head"),
    }
)
URL_ATTRIBUTES = frozenset(
    {"href", "src", "srcset", "action", "formaction", "data", "poster", "background", "xlink:href", "cite", "lowsrc"}
)
_IGNORED_IN_URL = re.compile(r"[\x00-\x20\x7f]+")
_BAD_SCHEME = re.compile(r"^(javascript|vbscript|data|livescript|mocha):", re.I)


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DANGEROUS_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            elif name == "style":
                self.found.append(f"<{tag} style=...>")
            elif name in URL_ATTRIBUTES and _BAD_SCHEME.match(_IGNORED_IN_URL.sub("", value or "")):
                self.found.append(f"<{tag} {name}={value!r}>")

    handle_startendtag = handle_starttag

    def handle_comment(self, data: str) -> None:
        self.found.append("<!-- comment -->")  # conditional comments run in old browsers; none should survive


def executable_markup(fragment: str) -> list[str]:
    """Everything in `fragment` that could run script or load active content (empty when it is inert)."""
    finder = _Finder()
    finder.feed(fragment)
    finder.close()
    return finder.found
