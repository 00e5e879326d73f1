"""Draft quality check: a 0-100 score and the reasons behind every deduction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.text import normalise

META_TITLE_MAX = 60
META_DESCRIPTION_MAX = 160
LENGTH_TOLERANCE = 0.15
LOW_SCORE = 70
BANNED_WORD_PENALTY = 10  # per distinct banned word found
BANNED_WORDS_MAX_PENALTY = 30


@dataclass
class Quality:
    score: int
    notes: list[str] = field(default_factory=list)

    @property
    def low(self) -> bool:
        return self.score < LOW_SCORE


def check(
    *,
    title: str,
    meta_title: str,
    meta_description: str,
    body_markdown: str,
    words: int,
    target_words: int,
    outline_headings: list[str],
    primary_keyword: str,
    banned_words: Sequence[str] = (),
) -> Quality:
    notes: list[str] = []
    score = 100
    deviation = (words - target_words) / target_words if target_words else 0.0
    if abs(deviation) > LENGTH_TOLERANCE:
        score -= 25
        notes.append(f"length {words} words is {deviation:+.0%} off the target {target_words}")
    headings = {normalise(h) for h in re.findall(r"^#{2,3}\s+(.+)$", body_markdown, flags=re.M)}
    missing = [h for h in outline_headings if normalise(h) not in headings]
    if missing:
        score -= min(30, 10 * len(missing))
        notes.append(f"outline headings missing: {', '.join(missing[:5])}")
    kw = normalise(primary_keyword)
    if kw not in normalise(title):
        score -= 10
        notes.append("primary keyword not in the title")
    first_paragraph = next((p for p in body_markdown.split("\n\n") if p.strip() and not p.startswith("#")), "")
    if kw not in normalise(first_paragraph):
        score -= 10
        notes.append("primary keyword not in the first paragraph")
    h2s = [normalise(h) for h in re.findall(r"^##\s+(.+)$", body_markdown, flags=re.M)]
    if not any(kw in h for h in h2s):
        score -= 5
        notes.append("primary keyword not in any H2")
    if not 0 < len(meta_title) <= META_TITLE_MAX:
        score -= 5
        notes.append(f"meta title length {len(meta_title)} (1-{META_TITLE_MAX})")
    if not 50 <= len(meta_description) <= META_DESCRIPTION_MAX:
        score -= 5
        notes.append(f"meta description length {len(meta_description)} (50-{META_DESCRIPTION_MAX})")
    if not re.search(r"^##\s+(FAQ|Frequently asked questions)", body_markdown, flags=re.M | re.I):
        score -= 10
        notes.append("no FAQ section")
    found = banned_found(banned_words, title, meta_title, meta_description, body_markdown)
    if found:
        score -= min(BANNED_WORDS_MAX_PENALTY, BANNED_WORD_PENALTY * len(found))
        notes.append(f"banned words used: {', '.join(found[:10])}")
    return Quality(max(score, 0), notes)


def banned_pattern(word: str) -> re.Pattern[str]:
    """Whole word or phrase, any case, any whitespace between a phrase's words."""
    body = r"\s+".join(re.escape(part) for part in word.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.I)


def banned_found(banned_words: Sequence[str], *texts: str) -> list[str]:
    """The banned words (as configured, first occurrence order) that appear in any of `texts`."""
    found: list[str] = []
    for word in dict.fromkeys(w for w in banned_words if w.strip()):
        pattern = banned_pattern(word)
        if any(pattern.search(text) for text in texts):
            found.append(word)
    return found
