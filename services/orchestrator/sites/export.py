"""CSV exports that are safe to open in a spreadsheet.

A cell that starts with `=`, `+`, `-`, `@`, TAB or CR is a formula to Excel, LibreOffice and Google
Sheets ("CSV injection"): `=HYPERLINK(...)` in a keyword would run on the reader's machine. Such a cell
gets a leading apostrophe, the OWASP-recommended neutraliser, which spreadsheets show as plain text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not isinstance(value, int | float):
        return "'" + text
    return text


def render_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue()
