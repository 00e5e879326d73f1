"""A section's headings are ours: the outline decides them, the model writes the text under them.

Small models put their prose on heading lines ("### This is a section about the best running shoes for flat
feet." with nothing under it, seen from SmolLM2), invent headings, or leave a planned H3 empty. Before the
quality gate reads a section, `tidy` keeps the outline's H3s that have text under them, turns a sentence
written as a heading into a paragraph, and drops an unplanned short heading and an H3 with nothing under it.
The gate still judges what is left: a section with no text stays empty, and a dropped outline heading costs
the draft its "outline headings missing" points.
"""

from __future__ import annotations

import re

from services.writer.quality import strip_number
from shared.text import normalise

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(?:```|~~~)")
SENTENCE_WORDS = 9  # an unplanned heading this long, or ending like a sentence, is prose on the wrong line


def _is_sentence(text: str) -> bool:
    return len(text.split()) >= SENTENCE_WORDS or text.rstrip().endswith((".", "!", "?", ":"))


def tidy(body: str, subheadings: list[str]) -> str:
    """`body` (a section without its H2) with only the planned H3s, each over text; see the module doc."""
    planned = {normalise(strip_number(h)): h for h in subheadings}
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]  # (planned H3 or None for the lead, its lines)
    fenced = False
    for line in body.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)  # a "# comment" in a code block is code, not a heading
        if not m:
            blocks[-1][1].append(line)
            continue
        text = m.group(1).strip()
        heading = planned.pop(normalise(strip_number(text)), None)  # popped: a heading written twice is once
        if heading is not None:
            blocks.append((heading, []))
        elif text and _is_sentence(text):
            blocks[-1][1].extend(["", text, ""])
        # else: an unplanned short heading, dropped; the text under it stays with the block before
    out: list[str] = []
    for heading, lines in blocks:
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if heading is None:
            out += [text] if text else []
        elif text:
            out += [f"### {heading}", text]
    return "\n\n".join(out)
