"""Text normalisation used for dedup keys (keywords, cluster names) and slugs."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    """NFKC, casefold, collapse whitespace: 'Best  Running Shoes' == 'best running shoes'."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def slugify(text: str, max_length: int = 80) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = _NON_SLUG.sub("-", ascii_text).strip("-")
    return slug[:max_length].rstrip("-") or "article"


def word_count(markdown_text: str) -> int:
    return len(re.findall(r"[\w'’-]+", re.sub(r"^#+\s.*$", "", markdown_text, flags=re.M)))
