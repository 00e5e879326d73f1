"""Prompt conventions and deterministic prose.

Everything here is a pure function of its inputs (seeds come from blake2b, never
from Python's salted ``hash``), so the same request always yields the same text.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


STOPWORDS = frozenset(
    _words(
        """
        a about above after again against all also am an and any are as at be because been before being
        below between both but by can could did do does doing down during each few for from further had
        has have having he her here hers him his how i if in into is it its itself just me more most my
        no nor not now of off on once only or other our ours out over own same she should so some such
        than that the their theirs them then there these they this those through to too under until up
        very was we were what when where which while who whom why will with would you your yours write
        article json return words word keywords keyword target outline number items item please make
        sure use using include must should following given based response format output schema field
        fields text content markdown section sections draft title
        """
    )
)

# Line conventions; the last occurrence wins because the user message comes last.
_KEYWORDS_RE = re.compile(r"^[ \t]*(?:[-*][ \t]*)?keywords?[ \t]*:[ \t]*(.+)$", re.I | re.M)
_TARGET_RE = re.compile(r"^[ \t]*(?:[-*][ \t]*)?target[ \t]+words[ \t]*:[ \t]*([\d,_]+)", re.I | re.M)
_ITEMS_RE = re.compile(r"^[ \t]*(?:[-*][ \t]*)?number[ \t]+of[ \t]+items[ \t]*:[ \t]*(\d+)", re.I | re.M)
_OUTLINE_RE = re.compile(r"^[ \t]*outline[ \t]*:[ \t]*$", re.I | re.M)
_HEADING_RE = re.compile(r"^#{1,6}[ \t]+\S")
_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")

# Caps keep a typo in a prompt from turning one request into a multi-megabyte reply.
MAX_TARGET_WORDS = 20_000
MAX_ITEMS = 100


def stable_hash(*parts: object) -> int:
    """64-bit hash that is stable across processes (unlike ``hash``)."""
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class PromptInfo:
    text: str
    keywords: tuple[str, ...]
    explicit_keywords: bool
    target_words: int | None
    outline: tuple[str, ...]
    n_items: int | None
    seed: int

    def keyword(self, offset: int = 0) -> str:
        return self.keywords[offset % len(self.keywords)]


def _last(pattern: re.Pattern[str], text: str) -> str | None:
    matches = pattern.findall(text)
    return str(matches[-1]).strip() if matches else None


def _outline(text: str) -> tuple[str, ...]:
    starts = list(_OUTLINE_RE.finditer(text))
    if not starts:
        return ()
    headings: list[str] = []
    for line in text[starts[-1].end() :].splitlines():
        stripped = line.strip()
        if _HEADING_RE.match(stripped):
            headings.append(stripped)
        elif stripped:
            break  # the outline block ends at the first non-blank, non-heading line
    return tuple(headings)


def _frequent_words(text: str, limit: int = 5) -> tuple[str, ...]:
    words = [w for w in (m.lower() for m in _WORD_RE.findall(text)) if w not in STOPWORDS and not w.isdigit()]
    ranked = Counter(words).most_common()  # ties keep first-occurrence order
    return tuple(w for w, _ in ranked[:limit]) or ("topic",)


@lru_cache(maxsize=256)
def parse_prompt(text: str) -> PromptInfo:
    raw_keywords = _last(_KEYWORDS_RE, text)
    keywords: tuple[str, ...] = ()
    if raw_keywords:
        parts = (p.strip().strip("\"'") for p in re.split(r"[,;]", raw_keywords))
        keywords = tuple(dict.fromkeys(p for p in parts if p))
    target = _last(_TARGET_RE, text)
    items = _last(_ITEMS_RE, text)
    target_words = int(re.sub(r"[,_]", "", target)) if target and re.search(r"\d", target) else None
    return PromptInfo(
        text=text,
        keywords=keywords or _frequent_words(text),
        explicit_keywords=bool(keywords),
        target_words=min(target_words, MAX_TARGET_WORDS) if target_words else None,
        outline=_outline(text),
        n_items=min(int(items), MAX_ITEMS) if items else None,
        seed=stable_hash(text),
    )


# --- vocabulary -----------------------------------------------------------------

_ADJ = _words(
    """
    practical reliable simple clear thoughtful consistent useful balanced proven flexible focused
    realistic careful steady honest affordable durable smart modern complete
    """
)
_NOUN = _words(
    """
    checklist budget routine strategy comparison detail plan process setup option schedule feature
    priority habit approach guide method framework decision benchmark goal
    """
)
_TEMPLATES = (
    "{K} is easier to get right when you start with a {a} {n}.",
    "Most readers looking into {k} want a {a} {n} they can act on today.",
    "A {a} approach to {k} keeps the {n} focused and the {n2} simple.",
    "Compare each {n} against your own goals before you commit to {k}.",
    "Small changes in your {n} often make a {a} difference with {k}.",
    "People who work with {k} every day recommend checking the {n} first.",
    "If {k} feels overwhelming, break the {n} into {a} steps and review the {n2} weekly.",
    "The {a} {n} behind {k} is worth understanding before you spend any money.",
    "Keep notes on every {n} so you can revisit {k} later with fresh eyes.",
    "Good results with {k} usually come from a {a} {n} and a steady {n2}.",
    "Think about how {k} fits your {n} rather than chasing every new trend.",
    "A quick review of the {n} can reveal {a} gaps in your plan for {k}.",
    "Readers often ask whether {k} is worth the effort, and a {a} {n} usually answers that.",
    "Use {k} as a starting point, then adjust the {n} to match your {n2}.",
    "The right {n} for {k} depends on budget, time and a {a} {n2}.",
    "When it comes to {k}, a {a} {n} beats guesswork every time.",
    "Start small with {k}, measure the {n}, and expand once the {n2} looks {a}.",
    "There is no single answer for {k}, but a {a} {n} narrows the field quickly.",
)
_TITLE_TEMPLATES = (
    "The Complete Guide to {K}",
    "{K}: What You Need to Know",
    "{K} Explained: A Practical Guide",
    "How to Get Started with {K}",
    "{K}: Tips, Ideas and Common Mistakes",
    "A Beginner's Guide to {K}",
    "Everything You Should Know About {K}",
)
_SUMMARY_TEMPLATES = (
    "A {a} guide to {k} that covers {k2} and {k3} with clear, actionable advice.",
    "Learn how {k} works, what to compare, and how {k2} fits into a {a} {n}.",
    "This piece explains {k} step by step and shows where {k2} makes a real difference.",
)
_SCENES = (
    "set on a sunlit desk with soft shadows",
    "in a bright outdoor scene at golden hour",
    "arranged as a clean flat-lay on a pastel background",
    "in a cozy interior with warm natural light",
    "shown in a modern studio with crisp reflections",
)
_STYLES = (
    "editorial photography style",
    "minimalist vector illustration",
    "soft watercolor illustration",
    "isometric 3D render",
)
_SMALL_WORDS = frozenset(_words("a an and as at but by for in of on or the to vs via with"))


def title_case(phrase: str) -> str:
    words = phrase.split()
    return " ".join(
        w if (i and w.lower() in _SMALL_WORDS) or any(c.isupper() for c in w) else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


def kebab(phrase: str) -> str:
    return "-".join(m.lower() for m in re.findall(r"[^\W_]+", phrase)) or "topic"


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeioAEIO]|honest)")


def _fill(template: str, rng: random.Random, keywords: Sequence[str], focus: int) -> str:
    k = keywords[focus % len(keywords)]
    filled = template.format(
        k=k,
        K=k[:1].upper() + k[1:],
        k2=keywords[(focus + 1) % len(keywords)],
        k3=keywords[(focus + 2) % len(keywords)],
        a=rng.choice(_ADJ),
        n=rng.choice(_NOUN),
        n2=rng.choice(_NOUN),
    )
    return _A_BEFORE_VOWEL.sub(r"\1n ", filled)


_SHORT_SENTENCES = (
    ("Enjoy.", "Decide."),
    ("Start today.", "Stay curious."),
    ("Keep it simple.", "Measure what matters."),
    ("Small steps add up.", "Consistency beats intensity here."),
)


def _closing(words: int, rng: random.Random) -> str:
    """Whole short sentences totalling exactly ``words`` words (no cut-off sentence)."""
    parts: list[str] = []
    while words > 0:
        size = min(words, len(_SHORT_SENTENCES))
        pair = _SHORT_SENTENCES[size - 1]
        pick = rng.choice(pair)
        if parts[-2:] == [pick, pick]:  # never three times running: four would read as a model's loop
            pick = pair[1] if pick == pair[0] else pair[0]
        parts.append(pick)
        words -= size
    return " ".join(parts)


def prose(words: int, keywords: Sequence[str], seed: int, focus: int = 0) -> str:
    """Exactly ``words`` whitespace-separated words, in paragraphs of 3-5 sentences."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    sentences: list[str] = []
    remaining = words
    per_paragraph = rng.randint(3, 5)
    while remaining > 0:
        # Rotate the keyword so every topic term shows up, leaning on the focus one.
        kw_focus = focus if rng.random() < 0.5 else focus + rng.randrange(len(keywords))
        tokens = _fill(rng.choice(_TEMPLATES), rng, keywords, kw_focus).split()
        for _ in range(4):  # near the end, look for a sentence that still fits
            if len(tokens) <= remaining:
                break
            tokens = _fill(rng.choice(_TEMPLATES), rng, keywords, kw_focus).split()
        if len(tokens) > remaining:
            tokens = _closing(remaining, rng).split()
        sentences.append(" ".join(tokens))
        remaining -= len(tokens)
        if len(sentences) >= per_paragraph:
            paragraphs.append(" ".join(sentences))
            sentences, per_paragraph = [], rng.randint(3, 5)
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def word_count(text: str) -> int:
    """Word count as used for ``Target words`` (Markdown heading marks excluded)."""
    return len([t for t in text.split() if not re.fullmatch(r"#+", t)])


def outline_markdown(outline: Sequence[str], words: int, keywords: Sequence[str], seed: int) -> str:
    """Headings verbatim, prose under each; heading words count toward the total."""
    budget = max(words - sum(word_count(h) for h in outline), 0)
    share, extra = divmod(budget, len(outline))
    blocks = []
    for i, heading in enumerate(outline):
        n = share + (1 if i < extra else 0)
        body = prose(n, keywords, stable_hash(seed, "section", i), focus=i) if n else ""
        blocks.append(f"{heading}\n\n{body}" if body else heading)
    return "\n\n".join(blocks)


def titles(keywords: Sequence[str], seed: int, focus: int = 0) -> list[str]:
    """Headline candidates, best first; the caller keeps the first that fits maxLength."""
    k = title_case(keywords[focus % len(keywords)])
    n = len(_TITLE_TEMPLATES)
    return [title_case(_TITLE_TEMPLATES[(seed + i) % n].replace("{K}", k)) for i in range(n)] + [k]


def summaries(keywords: Sequence[str], seed: int, focus: int = 0) -> list[str]:
    """One- or two-sentence candidates mentioning the keywords, best first."""
    rng = random.Random(seed)
    n = len(_SUMMARY_TEMPLATES)
    firsts = [_fill(_SUMMARY_TEMPLATES[(seed + i) % n], rng, keywords, focus) for i in range(n)]
    k = keywords[focus % len(keywords)]
    shortest = f"A practical guide to {k}."
    if seed % 3:
        return [*firsts, shortest]
    return [f"{firsts[0]} {_fill(rng.choice(_TEMPLATES), rng, keywords, focus + 1)}", *firsts, shortest]


def image_prompt(keywords: Sequence[str], seed: int, focus: int = 0) -> str:
    k = keywords[focus % len(keywords)]
    scene = _SCENES[seed % len(_SCENES)]
    style = _STYLES[(seed >> 8) % len(_STYLES)]
    return f"A vivid, detailed image of {k} {scene}, {style}, no text or logos."


def phrase(keywords: Sequence[str], seed: int, focus: int = 0) -> str:
    return f"{keywords[focus % len(keywords)]} {_NOUN[seed % len(_NOUN)]}"


_TRANSACTIONAL = re.compile(r"\b(buy|price|prices|pricing|cheap|deal|deals|coupon|coupons|order|discount)\b", re.I)
_COMMERCIAL = re.compile(r"\b(best|vs|versus|review|reviews|top|compare|comparison)\b", re.I)
_NAVIGATIONAL = re.compile(r"\b(login|log in|sign in|official|website|near me)\b", re.I)


def search_intent(cue_text: str) -> str:
    if _TRANSACTIONAL.search(cue_text):
        return "transactional"
    if _COMMERCIAL.search(cue_text):
        return "commercial"
    if _NAVIGATIONAL.search(cue_text):
        return "navigational"
    return "informational"


def fit(value: str, min_len: int | None, max_len: int | None, pad: str) -> str:
    """Respect minLength/maxLength, trimming at a word boundary."""
    pad = pad or "x"
    if min_len:
        while len(value) < min_len:
            value = f"{value} {pad}".strip()
    if max_len is not None and len(value) > max_len:
        words = value[: max_len + 1].split()[:-1] if " " in value[: max_len + 1] else []
        while len(words) > 1 and words[-1].lower().strip(",;:") in _SMALL_WORDS:
            words.pop()  # "... What You Need to" reads worse than "... What You Need"
        value = (" ".join(words) if words else value[:max_len]).rstrip(" ,;:-")
        if min_len and len(value) < min_len:  # trimming went too far: hard cut instead
            value = value + pad[: min_len - len(value)]
    return value


def fit_any(candidates: Sequence[str], min_len: int | None, max_len: int | None, pad: str) -> str:
    """First candidate already within the bounds, else the closest one trimmed or padded."""
    for value in candidates:
        if (min_len is None or len(value) >= min_len) and (max_len is None or len(value) <= max_len):
            return value
    too_long = max_len is not None and all(len(v) > max_len for v in candidates)
    return fit(min(candidates, key=len) if too_long else candidates[0], min_len, max_len, pad)
