"""Draft quality check: a 0-100 score, the reasons behind every deduction, and a verdict with teeth.

Ordinary flaws (a missing outline heading, a long meta title) cost a few points. Defects that make a draft
unpublishable as it stands are BLOCKING: placeholders and template leftovers (`LARGE_30`, `[insert ...]`,
`Lorem ipsum`, `TODO`, `{{...}}`), schema field names in the text (`section_description`), empty or repeated
sections, degenerate headings (numbered copies of the title, the same heading twice, one-word junk), a
model's repetition loop, and a length far off the target. Each blocking defect costs `BLOCKING_PENALTY`,
enough on its own to drop a perfect draft below the floor, and `passed` is False whenever there is one, so
whoever decides what happens next (images, regeneration) reads one flag and the reasons in `notes`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.text import normalise, repetition_loop

META_TITLE_MAX = 60
META_DESCRIPTION_MAX = 160
LENGTH_TOLERANCE = 0.15
# Far off: under half, or over twice the target. A 21-word draft for 300 words is not a draft.
LENGTH_FAR_UNDER, LENGTH_FAR_OVER = 0.5, 2.0
LOW_SCORE = 70
BLOCKING_PENALTY = 35  # > 100 - LOW_SCORE: one blocking defect fails even an otherwise perfect draft
BANNED_WORD_PENALTY = 10  # per distinct banned word found
BANNED_WORDS_MAX_PENALTY = 30
EMPTY_SECTION_WORDS = 15  # an H2 section (its H3s included) with fewer words says nothing
REPEATED_MIN_WORDS = 12  # paragraphs at least this long must not appear twice

# The writer's own schema fields and the words models copy from schemas or templates.
FIELD_NAMES = frozenset(
    {
        "section_markdown", "section_description", "section_title", "section_heading", "section_body",
        "intro_markdown", "conclusion_markdown", "meta_title", "meta_description", "primary_keyword",
        "secondary_keywords", "target_words", "content_type", "alt_text", "body_markdown", "faq_count",
    }
)  # fmt: skip
_FIELD_LIKE = re.compile(
    r"(?<![\w/.-])[a-z]+(?:_[a-z]+)*_(?:markdown|description|title|heading|text|content|body|keywords?|words|"
    r"count|name|summary)(?![\w/.-])"
)
_PLACEHOLDERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("token placeholder", re.compile(r"(?<![\w-])[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9](?![\w-])")),
    ("bracket placeholder", re.compile(
        r"\[(?:insert|add|your|placeholder|todo|tbd|enter|name of|link to|image|citation needed|source|example)"
        r"[^\]\n]{0,80}\](?!\()", re.I)),
    ("lorem ipsum", re.compile(r"\blorem ipsum\b", re.I)),
    ("TODO marker", re.compile(r"\b(?:TODO|TBD|FIXME|XXX)\b")),
    ("template placeholder", re.compile(
        r"\{\{[^{}\n]{0,80}\}\}|\{%[^%\n]{0,80}%\}|\$\{[a-z_]{2,40}\}|<<[^<>\n]{1,40}>>")),
    ("JSON fragment", re.compile(r'^\s*[{\[]?\s*"[a-z_]{3,40}"\s*:', re.M)),
)  # fmt: skip
_JUNK_WORDS = frozenset(
    {"heading", "section", "subheading", "title", "text", "string", "content", "body", "null", "none", "undefined",
     "example", "placeholder", "h2", "h3", "tbd", "todo", "untitled"}
)  # fmt: skip
_NUMBERED = re.compile(r"^\s*(?:\d+(?:\.\d+)*[.):]|[ivx]+[.)])\s+", re.I)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_HEADING = re.compile(r"^(#{2,3})\s+(.+?)\s*#*\s*$")


@dataclass
class Quality:
    score: int
    notes: list[str] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)  # the notes that alone fail the draft

    @property
    def passed(self) -> bool:
        return self.score >= LOW_SCORE and not self.blocking

    @property
    def low(self) -> bool:
        return not self.passed


@dataclass
class _Section:
    level: int
    heading: str
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()


def _sections(body_markdown: str) -> list[_Section]:
    sections: list[_Section] = [_Section(1, "")]  # the intro, before the first heading
    for line in body_markdown.splitlines():
        if m := _HEADING.match(line):
            sections.append(_Section(len(m.group(1)), m.group(2).strip()))
        else:
            sections[-1].lines.append(line)
    return sections


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def strip_number(heading: str) -> str:
    """The heading without an outline number ("2. ", "1.3) ", "iv. ")."""
    return _NUMBERED.sub("", heading)


def placeholders(*texts: str) -> list[str]:
    """Placeholders, template leftovers and schema field names found, each as `kind 'match'`."""
    found: list[str] = []
    for raw in texts:
        text = _CODE.sub(" ", raw)  # code may legitimately hold snake_case names and braces
        for kind, pattern in _PLACEHOLDERS:
            found += [f"{kind} {m.group(0).strip()[:40]!r}" for m in pattern.finditer(text)]
        found += [f"schema field name {m.group(0)!r}" for m in _FIELD_LIKE.finditer(text)]
        # known field names also when written with hyphens ("section-markdown-575.html", seen from a small model)
        found += [
            f"schema field name {w!r}"
            for w in re.findall(r"\b[a-z]+(?:[-_][a-z]+)+\b", text)
            if w.replace("-", "_") in FIELD_NAMES
        ]
    return list(dict.fromkeys(found))


def prose_problems(text: str) -> str | None:
    """What one reply's prose already shows of the blocking defects (placeholders, field names, a repetition
    loop): the writer asks again naming them, before the whole draft meets `check`."""
    found = placeholders(text)
    if loop := repetition_loop(text):
        found.append(f"repetition loop {loop[:40]!r}")
    if not found:
        return None
    return f"it contains placeholders or template text ({', '.join(found[:4])}); write real sentences instead"


def held_reason(q: Quality) -> str:
    """Why a draft does not go on, for the run's failures and activity (the notes hold the full list)."""
    why = q.blocking or [n for n in q.notes if n]
    return f"quality gate held the draft back (score {q.score}, floor {LOW_SCORE}): {'; '.join(why)}"


def structure_problems(title: str, body_markdown: str) -> list[str]:
    """Empty, repeated and degenerate sections and headings, and repetition loops."""
    problems: list[str] = []
    sections = _sections(body_markdown)
    headed = sections[1:]
    # empty: an H2 and its H3s together; an H3 on its own (a FAQ question without an answer)
    for i, s in enumerate(headed):
        if s.level == 2:
            j = i + 1
            while j < len(headed) and headed[j].level > 2:
                j += 1
            subs = headed[i + 1 : j]
            words = _words(s.text) + sum(_words(sub.heading) + _words(sub.text) for sub in subs)
            if words < EMPTY_SECTION_WORDS:
                problems.append(f"empty section '## {s.heading}' ({words} words)")
        elif not s.text:
            problems.append(f"empty subsection '### {s.heading}'")
    # repeated: the same section text twice, the same long paragraph twice
    bodies = Counter(normalise(s.text) for s in headed if _words(s.text) >= REPEATED_MIN_WORDS)
    problems += [f"repeated section text ({n}x): {body[:60]!r}" for body, n in bodies.items() if n > 1]
    paragraphs = Counter(normalise(p) for p in re.split(r"\n\s*\n", body_markdown) if _words(p) >= REPEATED_MIN_WORDS)
    problems += [f"repeated paragraph ({n}x): {p[:60]!r}" for p, n in paragraphs.items() if n > 1 and p not in bodies]
    # degenerate headings
    norm_title = normalise(strip_number(title))
    seen = Counter(normalise(strip_number(s.heading)) for s in headed)
    problems += [f"heading repeated {n}x: '{h}'" for h, n in seen.items() if n > 1]
    for s in headed:
        bare = strip_number(s.heading)
        if norm_title and normalise(bare) == norm_title and bare != s.heading:
            # a numbered copy of the title is a model filling an outline slot with the title again; a plain
            # H2 equal to the title is only clumsy (see title_heading below)
            problems.append(f"heading copies the title: '{s.heading}'")
        junk = not re.search(r"[^\W_]", bare) or bare.lower().strip(" :.") in _JUNK_WORDS or re.search(r"[\d_]", bare)
        if len(bare.split()) <= 1 and junk:
            problems.append(f"junk heading: '{s.heading}'")
    numbered = [s.heading for s in headed if _NUMBERED.match(s.heading)]
    if numbered and len(numbered) >= max(2, len(headed) // 2):
        problems.append(f"numbered headings (the outline's numbering copied): '{numbered[0]}'")
    if loop := repetition_loop(body_markdown) or repetition_loop(title):
        problems.append(f"repetition loop: {loop[:40]!r}")
    return problems


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
    blocking: list[str] = []
    score = 100

    def block(note: str) -> None:
        nonlocal score
        score -= BLOCKING_PENALTY
        notes.append(note)
        blocking.append(note)

    found = placeholders(title, meta_title, meta_description, body_markdown)
    if found:
        block(f"placeholders or template leftovers: {', '.join(found[:6])}")
    structure = structure_problems(title, body_markdown)
    if structure:
        block(f"broken structure: {'; '.join(structure[:6])}")
    deviation = (words - target_words) / target_words if target_words else 0.0
    if abs(deviation) > LENGTH_TOLERANCE:
        score -= 25
        notes.append(f"length {words} words is {deviation:+.0%} off the target {target_words}")
        if target_words and not LENGTH_FAR_UNDER <= words / target_words <= LENGTH_FAR_OVER:
            block(f"length far off the target: {words} words for {target_words}")
    headings = {normalise(h) for h in re.findall(r"^#{2,3}\s+(.+)$", body_markdown, flags=re.M)}
    if normalise(title) in headings:
        score -= 10
        notes.append("a heading repeats the title")
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
    banned = banned_found(banned_words, title, meta_title, meta_description, body_markdown)
    if banned:
        score -= min(BANNED_WORDS_MAX_PENALTY, BANNED_WORD_PENALTY * len(banned))
        notes.append(f"banned words used: {', '.join(banned[:10])}")
    return Quality(max(score, 0), notes, blocking)


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
