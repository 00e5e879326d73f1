"""Which text the database can store and a reader can trust: no NUL or other C0 control characters
(TAB, LF, CR allowed where text may span lines) and no lone surrogates (not encodable as UTF-8, so
PostgreSQL refuses them). Used by the API's input types, the strict JSON body check and ingest."""

from __future__ import annotations

import re

# Everything below U+0020 except TAB, LF and CR; DEL is printable enough to store. Surrogates D800-DFFF
# only occur in a Python str as lone halves (a JSON "\ud800" escape, an undecodable file name).
BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
BAD_LINE = re.compile(r"[\x00-\x1f\ud800-\udfff]")


def describe_bad_char(value: str, pattern: re.Pattern[str] = BAD_TEXT) -> str | None:
    """Why `value` cannot be stored (the first offending character and where), or None when it is fine."""
    match = pattern.search(value)
    if match is None:
        return None
    code = ord(match.group())
    what = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return f"contains {what} (U+{code:04X}) at position {match.start()}"
