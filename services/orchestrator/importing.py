"""Keyword import: CSV exports of the tools people use (and dedup for the JSON route). Pure functions.

Shapes (the header is the first of the first five non-blank lines that has a keyword column; it also tells
the delimiter, tab, comma or semicolon):
- Semrush, Ahrefs: `Keyword,...,Volume,...`, UTF-8 with or without BOM;
- Ahrefs "for Excel" and Google Keyword Planner: UTF-16 with tabs, with or without a BOM (without one the
  encoding is told by where the NUL bytes fall); Keyword Planner's title lines above the header are skipped;
- Google Search Console: `Top queries,Clicks,Impressions,CTR,Position` (impressions are the volume).
The other figures of these exports (intent, CPC, trend, SERP features, parent keyword, competition, clicks,
CTR, position, and any other column as text) are kept: see keyword_columns.py.
Volumes as `1300`, `1,300` / `1.300` / `1 300` (thousands), `1300.0`, `1.3K`, `2M`, or ranges such as
`1K – 10K` (the lower bound).

`parse_csv` raises nothing but `ImportError_`, for a file that cannot be used as a whole: bytes that are
not text in the detected encoding (named with line and byte: a cp1252 file would otherwise import only its
ASCII rows), a workbook, no header, more than MAX_ROWS rows. Everything else is a `RowProblem` with the
row's first line and the reason, and the other rows import: control characters (NUL, ESC, ...) in any
cell, a tab or line break in a keyword, broken quoting (an unterminated quote is reported at the line that
opens it), a cell over the csv module's field limit, a volume that is negative, fractional or not a number
(`NaN`, `inf`, `1e309`), values out of range, a keyword of invisible characters only. Nothing is dropped
silently; rows whose cells are all blank are skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import ValidationError

from services.orchestrator.keyword_columns import ColumnPlan, ColumnUse, cell_fields, plan_columns
from shared.contracts import KeywordIn
from shared.text import normalise, strip_invisible

MAX_ROWS = 100_000
HEADER_SEARCH_LINES = 5
MAX_VOLUME = 2_000_000_000  # KeywordIn's bound: the column is 32-bit
KEYWORD_COLUMNS = ("keyword", "keywords", "query", "top queries", "queries", "search term", "search query")
VOLUME_COLUMNS = (
    "volume",
    "search volume",
    "avg. monthly searches",
    "avg monthly searches",
    "monthly searches",
    "impressions",  # Search Console: the demand figure it has
)
DIFFICULTY_COLUMNS = ("keyword difficulty", "difficulty", "kd", "kd %", "competition (indexed value)")


class ImportError_(ValueError):
    """The file as a whole cannot be imported (not text, no keyword column, too large)."""


@dataclass
class RowProblem:
    line: int
    reason: str


@dataclass
class ParsedImport:
    keywords: list[KeywordIn] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    duplicates_in_file: int = 0
    columns: list[ColumnUse] = field(default_factory=list)  # how each header cell was used


# ---------------------------------------------------------------------------------------------- decoding

_WORKBOOKS = {b"PK\x03\x04": "a ZIP archive (an .xlsx workbook?)", b"\xd0\xcf\x11\xe0": "an Excel .xls workbook"}
_SNIFF_BYTES = 4096
# The line ends the csv module splits on (str.splitlines would also split on \x1c, \x85, U+2028, ...).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sniff_encoding(data: bytes) -> str:
    """BOM first; else UTF-16 when NULs sit at every other byte (the zero half of ASCII); else UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    half = len(data[:_SNIFF_BYTES]) // 2
    if half:
        even, odd = data[0 : 2 * half : 2].count(0), data[1 : 2 * half : 2].count(0)
        if odd >= 0.3 * half and even <= 0.05 * half:
            return "utf-16-le"
        if even >= 0.3 * half and odd <= 0.05 * half:
            return "utf-16-be"
    return "utf-8"


def _line_count(text: str) -> int:
    return len(_LINE_BREAK.findall(text)) + 1


def decode(data: bytes) -> str:
    for magic, what in _WORKBOOKS.items():
        if data.startswith(magic):
            raise ImportError_(f"file is {what}, not CSV text: export or save it as CSV")
    encoding = sniff_encoding(data)
    label = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16"}.get(encoding, "UTF-16 (no BOM)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        # Refused as a whole: a file in another encoding (cp1252, Latin-1) would otherwise import only its
        # ASCII rows. The line and byte say where to look.
        line = _line_count(data[: exc.start].decode(encoding, errors="replace"))
        raise ImportError_(
            f"file is not valid {label} text: {exc.reason} at line {line} "
            f"(byte {exc.start}: 0x{data[exc.start : exc.end].hex()}); save it as UTF-8 CSV"
        ) from exc
    return text.removeprefix("\ufeff")


# ------------------------------------------------------------------------------------------------ numbers

_EMPTY_VALUES = frozenset({"", "-", "–", "—", "n/a", "na", "none", "null"})
_SCALED = re.compile(r"(\d+(?:[.,]\d+)?)\s*([kKmM])")
_GROUPED = re.compile(r"\d{1,3}([,.'\u00a0\u202f ])\d{3}(?:\1\d{3})*")  # one separator throughout
_WHOLE = re.compile(r"(\d+)(?:[.,]0+)?")  # "1300.0": a spreadsheet's float
_FRACTION = re.compile(r"\d+[.,]\d+")
_RANGE = re.compile(r"(.+?)\s*[-–—]\s*(.+)")


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def _quantity(text: str) -> int | None:
    if match := _SCALED.fullmatch(text):
        return round(float(match[1].replace(",", ".")) * (1000 if match[2] in "kK" else 1_000_000))
    if _GROUPED.fullmatch(text):
        return int(re.sub(r"\D", "", text))
    if match := _WHOLE.fullmatch(text):
        return int(match[1])
    return None


def parse_volume(raw: str, name: str = "volume") -> int | None:
    """A whole number ≥ 0 in the notations exports use; None when the cell says "no figure"."""
    text = raw.strip()
    if text.isdecimal() and len(text) < 10:  # the common case, without the regular expressions
        return int(text)
    if text.lower() in _EMPTY_VALUES:
        return None
    if text[0] in "-−" and text[1:].strip()[:1].isdigit():
        raise ValueError(f"{name} {_shown(raw)} is negative")
    if len(text) > 40:
        raise ValueError(f"{name} {_shown(raw)} is not a number")
    bounds = _RANGE.fullmatch(text)
    lower = bounds[1] if bounds and _quantity(bounds[2]) is not None else text
    value = _quantity(lower)
    if value is None:
        kind = "a whole number" if _FRACTION.fullmatch(lower) else "a number"
        raise ValueError(f"{name} {_shown(raw)} is not {kind}")
    if value > MAX_VOLUME:
        raise ValueError(f"{name} {_shown(raw)} is larger than {MAX_VOLUME}")
    return value


def parse_difficulty(raw: str) -> int | None:
    return parse_volume(raw.strip().removesuffix("%"), "difficulty")


# -------------------------------------------------------------------------------------------------- CSV

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Unicode Cc except tab, LF, CR
_KEYWORD_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # a keyword is one line


def _cell_name(cell: str) -> str:
    return strip_invisible(cell).strip().lower()


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [_cell_name(h) for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _find_header(text: str) -> tuple[int, int, str] | None:
    """(line number, offset in `text`, delimiter) of the header among the first non-blank lines."""
    start, number, seen = 0, 1, 0
    ends = _LINE_BREAK.finditer(text)
    while seen < HEADER_SEARCH_LINES:
        end = next(ends, None)
        line = text[start : end.start() if end else len(text)]
        if line.strip():
            seen += 1
            for delimiter in ("\t", ",", ";"):
                try:
                    cells = next(csv.reader([line], delimiter=delimiter), [])
                except csv.Error:  # e.g. a cell over the field limit: not a header
                    continue
                if any(_cell_name(c) in KEYWORD_COLUMNS for c in cells):
                    return number, start, delimiter
        if end is None:
            break
        start, number = end.end(), number + 1
    return None


@dataclass
class _Record:
    first: int  # the record's physical lines (a quoted cell may span several)
    last: int
    cells: list[str]
    error: str | None = None


def _records(text: str, first_line: int, delimiter: str) -> Iterator[_Record]:
    # strict: a stray character after a closing quote is an error, not silently glued to the cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    consumed = 0
    while True:
        first = first_line + consumed
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader resumes on the next line
            yield _Record(first, first_line + reader.line_num - 1, [], str(exc))
        else:
            yield _Record(first, first_line + reader.line_num - 1, cells)
        consumed = reader.line_num


def _spans(rec: _Record) -> str:
    return f"lines {rec.first}–{rec.last}" if rec.last > rec.first else f"line {rec.first}"


def _csv_error_reason(rec: _Record, delimiter: str) -> str:
    error = rec.error or ""
    if "unexpected end of data" in error:
        return f"unterminated quote: the quoted cell opened on line {rec.first} runs to the end of the file"
    if "field larger than field limit" in error:
        return f"a cell is longer than {csv.field_size_limit()} characters (the CSV field limit)"
    if "expected after" in error and rec.last > rec.first:
        return (
            f"malformed quoting: the quoted cell opened on line {rec.first} closes on line {rec.last} "
            f"with text after its closing quote (an unterminated quote?)"
        )
    if "expected after" in error:
        return f"malformed quoting: text after a closing quote ({delimiter!r} expected)"
    return f"malformed CSV ({_spans(rec)}): {error}"


def _validation_reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "row"
    message = str(err["msg"]).removeprefix("Value error, ")
    return message if message.startswith(where) else f"{where}: {message}"


def _row(
    rec: _Record, header: list[str], kw_col: int, vol_col: int | None, kd_col: int | None, plan: ColumnPlan
) -> KeywordIn | str:
    """The keyword of one record, or the reason it cannot be used."""
    if _CONTROL.search("".join(rec.cells)):
        i, bad = next((i, m[0]) for i, c in enumerate(rec.cells) if (m := _CONTROL.search(c)))
        column = _shown(header[i].strip()) if i < len(header) else f"#{i + 1}"
        return f"column {column} contains the control character U+{ord(bad):04X}"
    keyword = rec.cells[kw_col] if kw_col < len(rec.cells) else ""
    if not keyword.strip():
        return "empty keyword"
    if _KEYWORD_CONTROL.search(keyword.strip()):
        if rec.last > rec.first:
            return f"keyword spans {_spans(rec)}: a quote opened on line {rec.first} closes only on line {rec.last}"
        return "keyword contains a tab or line break"
    try:
        volume = parse_volume(rec.cells[vol_col]) if vol_col is not None and vol_col < len(rec.cells) else None
        kd = parse_difficulty(rec.cells[kd_col]) if kd_col is not None and kd_col < len(rec.cells) else None
        return KeywordIn(keyword=keyword, volume=volume, difficulty=kd, **cell_fields(rec.cells, plan, parse_volume))
    except ValidationError as exc:
        return _validation_reason(exc)
    except ValueError as exc:
        return str(exc)


def parse_csv(data: bytes) -> ParsedImport:
    text = decode(data)
    found = _find_header(text)
    if found is None:
        raise ImportError_("no header with a keyword column found (expected e.g. 'Keyword,Volume' or 'Top queries')")
    line, offset, delimiter = found
    records = _records(text[offset:], line, delimiter)
    head = next(records, None)
    kw_col = _column(head.cells, KEYWORD_COLUMNS) if head else None
    if head is None or head.error or kw_col is None:
        reason = head.error if head and head.error else "no keyword column"
        raise ImportError_(f"the header on line {line} cannot be read: {reason}")
    vol_col, kd_col = _column(head.cells, VOLUME_COLUMNS), _column(head.cells, DIFFICULTY_COLUMNS)
    taken = {i: name for i, name in ((kw_col, "keyword"), (vol_col, "volume"), (kd_col, "difficulty")) if i is not None}
    plan = plan_columns(head.cells, taken)
    result = ParsedImport(columns=plan.uses)
    seen: set[str] = set()
    rows = 0
    for rec in records:
        if rec.error is None and not any(c.strip() for c in rec.cells):
            continue
        rows += 1
        if rows > MAX_ROWS:
            raise ImportError_(f"more than {MAX_ROWS} rows; at most {MAX_ROWS} per import")
        if rec.error is not None:
            result.problems.append(RowProblem(rec.first, _csv_error_reason(rec, delimiter)))
            continue
        item = _row(rec, head.cells, kw_col, vol_col, kd_col, plan)
        if isinstance(item, str):
            result.problems.append(RowProblem(rec.first, item))
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
