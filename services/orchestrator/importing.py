"""Keyword import: CSV in the common planner-export shape (`Keyword,Volume,...`) and JSON.

Planner exports come as UTF-8 (with or without BOM) or UTF-16 with tabs; volumes as `1,300`, `1.3K`
or ranges like `1K – 10K` (lower bound taken). Every row that cannot be used is reported with its line
number and reason; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from shared.contracts import KeywordIn
from shared.text import normalise

MAX_ROWS = 100_000
KEYWORD_COLUMNS = ("keyword", "keywords", "query", "search term", "search query")
VOLUME_COLUMNS = ("volume", "search volume", "avg. monthly searches", "avg monthly searches", "monthly searches")
DIFFICULTY_COLUMNS = ("keyword difficulty", "difficulty", "kd", "kd %", "competition (indexed value)")


class ImportError_(ValueError):
    """The file as a whole cannot be imported (no keyword column, undecodable, too large)."""


@dataclass
class RowProblem:
    line: int
    reason: str


@dataclass
class ParsedImport:
    keywords: list[KeywordIn] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    duplicates_in_file: int = 0


def decode(data: bytes) -> str:
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    try:
        return data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportError_(
            f"file is not valid {'UTF-16' if utf16 else 'UTF-8'} text: {exc.reason} at byte {exc.start}"
        ) from exc


_NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)\s*([kKmM])?")


def parse_volume(raw: str) -> int | None:
    text = raw.strip()
    if not text or text in {"-", "—", "n/a", "N/A"}:
        return None
    match = _NUMBER.search(text)
    if not match:
        raise ValueError(f"volume {raw!r} is not a number")
    number, suffix = match.groups()
    if suffix:
        value = float(number.replace(",", "."))
        return int(value * (1000 if suffix.lower() == "k" else 1_000_000))
    return int(number.replace(",", "").replace(".", ""))


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _find_header(lines: list[str]) -> tuple[int, str] | None:
    for index, line in enumerate(lines):
        for delimiter in ("\t", ",", ";"):
            cells = next(csv.reader([line], delimiter=delimiter))
            if any(c.strip().lower() in KEYWORD_COLUMNS for c in cells):
                return index, delimiter
    return None


def parse_csv(data: bytes) -> ParsedImport:
    text = decode(data)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # Keyword Planner puts title lines above the header ("Keyword Stats ..."): the header is the first line
    # with a cell that names a keyword column exactly, which also tells the delimiter.
    found = _find_header(lines[:5])
    if found is None:
        raise ImportError_("no header with a keyword column found (expected e.g. 'Keyword,Volume')")
    start, delimiter = found
    body = "\n".join(lines[start:])
    rows = list(csv.reader(io.StringIO(body), delimiter=delimiter))
    header, records = rows[0], rows[1:]
    if len(records) > MAX_ROWS:
        raise ImportError_(f"{len(records)} rows; at most {MAX_ROWS} per import")
    kw_col = _column(header, KEYWORD_COLUMNS)
    if kw_col is None:
        raise ImportError_(f"no keyword column in header {header!r}")
    vol_col = _column(header, VOLUME_COLUMNS)
    kd_col = _column(header, DIFFICULTY_COLUMNS)
    result = ParsedImport()
    seen: set[str] = set()
    for n, row in enumerate(records, start=start + 2):
        if kw_col >= len(row) or not row[kw_col].strip():
            result.problems.append(RowProblem(n, "empty keyword"))
            continue
        try:
            volume = parse_volume(row[vol_col]) if vol_col is not None and vol_col < len(row) else None
            difficulty = parse_volume(row[kd_col]) if kd_col is not None and kd_col < len(row) else None
            item = KeywordIn(keyword=row[kw_col], volume=volume, difficulty=difficulty)
        except ValueError as exc:
            result.problems.append(RowProblem(n, str(exc).splitlines()[0] if str(exc) else "invalid row"))
            continue
        norm = normalise(item.keyword)
        if norm in seen:
            result.duplicates_in_file += 1
            continue
        seen.add(norm)
        result.keywords.append(item)
    return result


def dedupe(items: list[KeywordIn]) -> tuple[list[KeywordIn], int]:
    seen: set[str] = set()
    out: list[KeywordIn] = []
    for item in items:
        norm = normalise(item.keyword)
        if norm not in seen:
            seen.add(norm)
            out.append(item)
    return out, len(items) - len(out)
