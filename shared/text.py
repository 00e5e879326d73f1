"""Text normalisation used for dedup keys (keywords, cluster names) and slugs."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

_SPACE = re.compile(r"\s+")
_NON_SLUG = re.compile(r"[^a-z0-9]+")
# Invisible characters that are not Unicode format (Cf) characters but render as nothing all the same:
# the combining grapheme joiner and the variation selectors ("❤️" and "❤" are one keyword).
_INVISIBLE = frozenset({0x034F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)})
# Format characters exist in planes 0, 1 and 14 only (2-3 hold ideographs, 4-13 are unassigned, 15-16 are
# private use); scanning those three is a fifth of the cost of all of Unicode (a unit test checks the claim).
FORMAT_PLANES = (0, 1, 14)


@cache
def _invisible_pattern() -> re.Pattern[str]:
    found = [
        cp
        for plane in FORMAT_PLANES
        for cp in range(plane << 16, (plane + 1) << 16)
        if unicodedata.category(chr(cp)) == "Cf" or cp in _INVISIBLE
    ]
    ranges: list[list[int]] = []
    for cp in found:  # as ranges: a class of single characters is scanned one by one, 50x slower
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]")


def strip_invisible(text: str) -> str:
    """Drop format characters (category Cf: zero-width space/joiners, BOM, soft hyphen, bidi marks, tags)."""
    if text.isascii():  # no format characters below U+0080: the common case costs one scan
        return text
    return _invisible_pattern().sub("", text)


def normalise(text: str) -> str:
    r"""Dedup key: invisible characters dropped, NFKC, casefold, whitespace collapsed.

    'Best  Running Shoes' == 'best running shoes' == 'best run\u200bning shoes'. The invisible characters go
    first so that NFKC composes across where they were ('e', ZWSP, U+0301 -> 'é'); for text without them
    the key is what it always was (stored `keyword_norm` and cluster names keep matching).
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", strip_invisible(text)).casefold()).strip()


def one_line(text: str) -> str:
    """Whitespace (line breaks too) collapsed: text that goes into a Markdown heading cannot open new blocks."""
    return " ".join(text.split())


def slugify(text: str, max_length: int = 80) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = _NON_SLUG.sub("-", ascii_text).strip("-")
    return slug[:max_length].rstrip("-") or "article"


def word_count(markdown_text: str) -> int:
    return len(re.findall(r"[\w'’-]+", re.sub(r"^#+\s.*$", "", markdown_text, flags=re.M)))


# A model stuck in a loop: one character 20+ times ("1111…"), one word 6+ times in a row ("the the the…"), or a
# phrase of 2-8 words 4+ times in a row ("look at your shoes, look at your shoes, …", "Coffee Grinder, Coffee
# Grinder, …", both from SmolLM2). Prose says a phrase twice for emphasis, hardly ever four times running.
_LOOP_CHARS = re.compile(r"(\S)\1{19,}")
_LOOP_WORDS = re.compile(r"\b(\w+)(?:\W+\1\b){5,}", re.I)
_LOOP_PHRASE = re.compile(r"\b((?:\w+\W+){2,8}?)\1{3,}", re.I)


def repetition_loop(text: str) -> str | None:
    """The start of the first repetition loop in `text` (at most 60 characters), or None."""
    for pattern in (_LOOP_CHARS, _LOOP_WORDS, _LOOP_PHRASE):
        if found := pattern.search(text):
            return found.group(0)[:60]
    return None
