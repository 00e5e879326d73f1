"""What an admitted draft must not contain: the marks of a model that filled a template instead of writing.

Independent of services/writer/quality.py on purpose: this is the yardstick the quality gate is held to.
The patterns come from what SmolLM2 and friends produced in the issue's trial run (`LARGE_30`,
`section_description`, looping `"1111…"` titles and phrases, empty and repeated sections).
"""

from __future__ import annotations

import re

_CHECKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("schema/field name", re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")),  # section_description, meta_title
    ("constant-like token", re.compile(r"\b[A-Z]{2,}(?:_[A-Z0-9]+)+\b")),  # LARGE_30
    ("template variable", re.compile(r"\$\{?[a-z_]+\}?|\{\{[^}]*\}\}|\{[a-z_]+\}")),  # $heading, {{x}}, {topic}
    ("bracketed placeholder", re.compile(
        r"\[(?:insert|your|add|placeholder|topic|keyword|name|link|image|brand|product|city|number)\b[^\]]*\]",
        re.I)),
    ("filler text", re.compile(r"\blorem ipsum\b|\bTODO\b|\bTBD\b|\bXXX+\b|\bplaceholder\b", re.I)),
    ("runaway repetition", re.compile(r"(\S)\1{9,}|\b(\w+)(?:\W+\2\b){5,}", re.I)),  # 1111111111, "the the the…"
    ("runaway phrase", re.compile(r"\b((?:\w+[\s,;.]+){2,6})\1{3,}", re.I)),  # "look at your shoes, " 4x and on
)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def sections(markdown: str) -> list[tuple[str, str]]:
    """(H2 heading, body) pairs; the body keeps its H3 lines."""
    parts = re.split(r"^##[ \t]+(.*)$", markdown, flags=re.M)
    return [(parts[i].strip(), parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def problems(*, title: str, meta_title: str, meta_description: str, body_markdown: str) -> list[str]:
    """Each placeholder, empty or repeated section, or degenerate heading found, named with where it is."""
    found: list[str] = []
    fields = {"title": title, "meta title": meta_title, "meta description": meta_description, "body": body_markdown}
    for where, text in fields.items():
        if not text.strip():
            found.append(f"{where} is empty")
        for what, pattern in _CHECKS:
            match = pattern.search(text)
            if match:
                found.append(f"{what} in {where}: {match.group(0)[:40]!r}")
    pairs = sections(body_markdown)
    if not pairs:
        found.append("body has no ## section")
    headings = [_norm(h) for h, _ in pairs]
    for heading, body in pairs:
        if len(_norm(heading)) < 3 or not re.search(r"[a-zA-Z]{2}", heading):
            found.append(f"degenerate heading {heading!r}")
        prose = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))
        if not _norm(prose):
            found.append(f"empty section {heading!r}")
    repeated = sorted({h for h in headings if headings.count(h) > 1})
    if repeated:
        found.append(f"repeated headings: {repeated}")
    bodies = [_norm(b) for _, b in pairs if _norm(b)]
    if len(set(bodies)) < len(bodies):
        found.append("two sections have the same text")
    return found
