"""Is a reply written in the site's language? A cheap check on the reply's prose (`langdetect`).

The site's language is free text ("English", "Deutsch", "pt-BR"); `langcodes` turns it into a code. Only
prose is judged (string values of four words or more, at least `MIN_WORDS` in all): names, keywords and
short labels are often English in any language. A language neither library knows is not checked.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import langcodes
from langdetect import DetectorFactory, LangDetectException, detect_langs
from langdetect.detector_factory import init_factory

from shared.ai.schema import strings

DetectorFactory.seed = 0  # langdetect samples at random; a seed makes the verdict repeatable
# langdetect loads its profiles on first use without a lock: a second thread meanwhile sees a half-loaded set
# (alphabetical, so everything reads as Afrikaans). Checks run in worker threads, so load once under a lock.
_LOADING = threading.Lock()


def _ready() -> set[str]:
    """Load the profiles (once); the base codes of the languages langdetect knows."""
    with _LOADING:  # uncontended after the first call
        init_factory()
    return _known()


@cache
def _known() -> set[str]:
    from langdetect import detector_factory

    return {_base(code) for code in detector_factory._factory.get_lang_list()}
MIN_WORDS = 15
CONFIDENT = 0.8
# langdetect's cost grows with the text (its n-grams); a draft's section is hundreds of words and the writer
# checks every one (a fifth of its CPU in a run). Three runs of words from the start, the middle and the end
# judge a long reply as well: a reply that drifts into another language midway is still caught.
JUDGED_WORDS = 240
# langdetect's codes where they differ from the language's ISO 639-1 code.
_DETECTOR_CODES = {"nb": "no", "nn": "no", "zh": "zh"}


@cache
def language_code(name: str) -> str | None:
    """ISO 639-1 code of a language given by name (in English or in itself) or by tag; None if unknown."""
    name = name.strip()
    if not name:
        return None
    try:
        code = langcodes.find(name).language
    except LookupError:
        code = None
    if code:
        return _DETECTOR_CODES.get(code, code)
    try:
        tag = langcodes.Language.get(name)
    except (ValueError, LookupError):
        return None
    if tag.language and tag.is_valid():
        return _DETECTOR_CODES.get(tag.language, tag.language)
    return None


def prose(value: Any) -> list[str]:
    """The reply's string values that read like sentences."""
    return [text for text in strings(value) if len(text.split()) >= 4]


def judged(words: list[str], limit: int = JUDGED_WORDS) -> list[str]:
    """At most `limit` of the words: all of them, or three runs of a third each (start, middle, end)."""
    if len(words) <= limit:
        return words
    run = limit // 3
    middle = (len(words) - run) // 2
    return words[:run] + words[middle : middle + run] + words[-run:]


def _base(code: str) -> str:
    return code.split("-", maxsplit=1)[0]


def mismatch(value: Any, expected: str) -> str | None:
    """None when the prose is in `expected` (or cannot be judged), else what it looks like instead."""
    code = language_code(expected)
    words = " ".join(prose(value)).split()
    if code is None:
        return None
    if len(words) < MIN_WORDS:
        return None
    text = " ".join(judged(words))
    if _base(code) not in _ready():
        return None  # a language the detector cannot recognise is not judged
    try:
        found = detect_langs(text)
    except LangDetectException:
        return None
    if not found:
        return None
    top = found[0]
    expected_share = sum(lang.prob for lang in found if _base(lang.lang) == _base(code))
    if _base(top.lang) != _base(code) and top.prob >= CONFIDENT and expected_share < 1 - CONFIDENT:
        try:
            name = langcodes.Language.get(_base(top.lang)).display_name()
        except (ValueError, LookupError):
            name = top.lang
        return f"it reads as {name} ({top.prob:.0%} sure), the site writes in {expected}"
    return None
