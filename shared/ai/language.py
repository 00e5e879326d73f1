"""Is a reply written in the site's language? A cheap check on the reply's prose (`py3langid`).

The site's language is free text ("English", "Deutsch", "pt-BR"); `langcodes` turns it into a code. Only
prose is judged (string values of four words or more, at least `MIN_WORDS` in all): names, keywords and
short labels are often English in any language. A language the detector does not know is not checked.

Why py3langid (langid.py's naive Bayes over byte n-grams, numpy): langdetect, used before, samples n-grams at
random in pure Python: 7 ms for a 240-word section, half of the writer's CPU in a bench run (issue 13).
py3langid judges the same text in 0.2 ms, deterministically, with posterior probabilities of the same kind (a
reply that drifts into German midway still reads German). pycld2, faster still, reports shares of the text
instead (69 % German for that drift), which would need another rule.

The detector also knows varieties that are easily confused with a neighbour (Egyptian Arabic and Arabic,
Nigerian Pidgin and English, Malay and Indonesian, Norwegian and Bokmål): a detected language that close to
the site's (`langcodes.tag_distance`) counts as the site's, so such a reply is not asked again at the
customer's expense.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import langcodes
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from shared.ai.schema import strings

MIN_WORDS = 15
CONFIDENT = 0.8
# The detector's cost grows with the text; a draft's section is hundreds of words and the writer checks every
# one. Three runs of words from the start, the middle and the end judge a long reply as well: a reply that
# drifts into another language midway is still caught.
JUDGED_WORDS = 240
# Languages at most this far apart (langcodes' tag distance, the nearer way round) count as one: 1-24 for the
# pairs above, 59 for Serbian and Croatian, 80 and more for languages a reader of one does not read.
CLOSE = 25
NO_LANGUAGE = "zxx"  # the detector's label for text without linguistic content: never a mismatch
_LOADING = threading.Lock()  # checks run in worker threads: the model (0.4 s to load) is loaded once


@cache
def _loaded() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detector() -> LanguageIdentifier:
    """The detector, loaded on first use (a worker loads it at start-up: shared/ai/client.py)."""
    with _LOADING:  # uncontended after the first call
        return _loaded()


@cache
def _close(code: str) -> frozenset[str]:
    """The detector's labels that count as `code` (empty: a language it does not know)."""
    return frozenset(
        label
        for label in detector().labels
        if label != NO_LANGUAGE
        and min(langcodes.tag_distance(code, label), langcodes.tag_distance(label, code)) <= CLOSE
    )


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
        return code
    try:
        tag = langcodes.Language.get(name)
    except (ValueError, LookupError):
        return None
    if tag.language and tag.is_valid():
        return tag.language
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


def mismatch(value: Any, expected: str) -> str | None:
    """None when the prose is in `expected` (or cannot be judged), else what it looks like instead."""
    code = language_code(expected)
    words = " ".join(prose(value)).split()
    if code is None:
        return None
    if len(words) < MIN_WORDS:
        return None
    same = _close(code)
    if not same:
        return None  # a language the detector cannot recognise is not judged
    ranked = detector().rank(" ".join(judged(words)))
    if not ranked:
        return None
    top, top_prob = ranked[0]
    expected_share = sum(prob for lang, prob in ranked if lang in same)
    if top not in same and top != NO_LANGUAGE and top_prob >= CONFIDENT and expected_share < 1 - CONFIDENT:
        try:
            name = langcodes.Language.get(top).display_name()
        except (ValueError, LookupError):
            name = top
        return f"it reads as {name} ({top_prob:.0%} sure), the site writes in {expected}"
    return None
