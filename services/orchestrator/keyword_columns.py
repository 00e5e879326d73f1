"""Which column of a keyword tool's export feeds which `KeywordIn` field, and the cell parsers for the figures
beyond keyword, volume and difficulty. Pure functions, used by `importing.parse_csv`.

Recognised (header names compared lower-cased, invisible characters and spacing ignored):
- intent: `Intent`/`Intents`/`Search intent` cells such as `Commercial, Informational` or Semrush's letters
  `C, I`; Ahrefs' newer exports give one true/false column per intent (`Informational`, ..., `Local`);
- parent keyword: Ahrefs' `Parent Keyword` (`Parent topic` in newer exports);
- CPC: `CPC`, `CPC (USD)` (the currency is taken from the header), `Avg. CPC`; `Currency` (Keyword Planner);
- competition: Semrush's `Competitive Density` and numeric `Competition` (0-1, or 0-100 as a percentage);
  Planner's `Competition` labels `Low`/`Medium`/`High` become `competition_level`;
- trend: Semrush's `Trend` (`0.67,0.82,1.00`) or Planner's monthly `Searches: Jan 2026` columns (volumes);
- SERP features; Search Console's `Clicks`, `CTR` (`3.53%`) and `Position`.
Every other named column is kept as text in `extra` (header → cell): nothing a tool exported is dropped. A
cell that should be a number and is not fails its row with the reason, like a bad volume; a label we do not
know (an intent in another language, say) is kept as written in `extra`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import INTENTS
from shared.text import strip_invisible

MAX_EXTRA_COLUMNS = 40
MAX_LABEL = 80
MAX_EXTRA_VALUE = 200

_SIMPLE: dict[str, str] = {
    **dict.fromkeys(("intent", "intents", "search intent", "keyword intent", "keyword intents"), "intent"),
    **dict.fromkeys(("parent keyword", "parent topic"), "parent_keyword"),
    **dict.fromkeys(("currency",), "currency"),
    **dict.fromkeys(("competition", "competitive density", "com.", "competition density"), "competition"),
    **dict.fromkeys(("trend", "trends"), "trend"),
    **dict.fromkeys(("serp features", "serp feature", "serp features by keyword"), "serp_features"),
    **dict.fromkeys(("clicks",), "clicks"),
    **dict.fromkeys(("ctr", "url ctr"), "ctr"),
    **dict.fromkeys(("position", "avg. position", "average position", "avg position"), "position"),
}
_CPC = re.compile(r"(?:avg\.? |average )?(?:cpc|cost per click)(?: \(([a-z]{3})\)| ([a-z]{3}))?")
_MONTHLY = re.compile(r"searches: .+")
_IGNORED = {"#", "no.", "no"}
_INTENT_LETTERS = {name[0]: name for name in INTENTS}  # i, n, c, t, b, l: Semrush's short forms
_TRUE = {"true", "yes", "y", "1", "x", "✓", "✔"}
_FALSE = {"false", "no", "n", "0", ""}
_LEVELS = {"low": "low", "medium": "medium", "med": "medium", "high": "high"}
_EMPTY = frozenset({"", "-", "–", "—", "n/a", "na", "none", "null"})
_CURRENCY_SIGNS = "$€£¥₹"


def header_name(cell: str) -> str:
    return " ".join(strip_invisible(cell).split()).lower()


@dataclass(frozen=True)
class ColumnUse:
    """How one header cell of the file is used (shown in the import's answer)."""

    header: str
    stored_as: str  # a KeywordIn field, `extra.<header>`, or `ignored (...)`


@dataclass
class ColumnPlan:
    """Column index → what it feeds, for the columns other than keyword, volume and difficulty."""

    fields: dict[int, str] = field(default_factory=dict)
    intent_flags: dict[int, str] = field(default_factory=dict)  # Ahrefs: one true/false column per intent
    monthly: list[int] = field(default_factory=list)  # Planner: searches per month, oldest first → trend
    extra: dict[int, str] = field(default_factory=dict)  # index → the header as written
    cpc_currency: str | None = None
    uses: list[ColumnUse] = field(default_factory=list)  # one per header cell, in the file's order


def plan_columns(header: Sequence[str], taken: dict[int, str]) -> ColumnPlan:
    """The plan for every column not in `taken` (index → field of the columns found already)."""
    plan = ColumnPlan()
    claimed = set(taken.values())
    for i, cell in enumerate(header):
        label = " ".join(strip_invisible(cell).split())
        if i in taken:
            plan.uses.append(ColumnUse(label, taken[i]))
            continue
        name = label.lower()
        target = _SIMPLE.get(name)
        cpc = _CPC.fullmatch(name)
        if cpc and "cpc" not in claimed:
            target = "cpc"
            currency = cpc[1] or cpc[2]
            plan.cpc_currency = currency.upper() if currency else None
        if target is not None and target not in claimed:
            plan.fields[i] = target
            claimed.add(target)
            plan.uses.append(ColumnUse(label, target))
        elif name in INTENTS:
            plan.intent_flags[i] = name
            plan.uses.append(ColumnUse(label, "intent"))
        elif _MONTHLY.fullmatch(name) and "trend" not in plan.fields.values():
            plan.monthly.append(i)
            plan.uses.append(ColumnUse(label, "trend"))
        elif not name or name in _IGNORED:
            plan.uses.append(ColumnUse(label, "ignored (row number or unnamed)"))
        elif len(plan.extra) >= MAX_EXTRA_COLUMNS:
            plan.uses.append(ColumnUse(label, f"ignored (more than {MAX_EXTRA_COLUMNS} other columns)"))
        else:
            plan.extra[i] = label[:MAX_LABEL]
            plan.uses.append(ColumnUse(label, f"extra.{label[:MAX_LABEL]}"))
    return plan


# ------------------------------------------------------------------------------------------------ cells
def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def is_empty(raw: str) -> bool:
    return raw.strip().lower() in _EMPTY


def parse_number(raw: str, name: str) -> float | None:
    """A decimal number as exports write it: `1.20`, `1,20`, `$1.20`, `1,234.56`, `1.234,56`, `3.5%` (→ 3.5)."""
    text = raw.strip().strip(_CURRENCY_SIGNS).removesuffix("%").strip().replace("\u00a0", "").replace(" ", "")
    if text.lower() in _EMPTY:
        return None
    if "," in text and "." in text:  # the later one is the decimal separator
        text = text.replace(",", "") if text.rfind(".") > text.rfind(",") else text.replace(".", "").replace(",", ".")
    elif text.count(",") == 1:
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {_shown(raw)} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} {_shown(raw)} is not a number")
    if value < 0:
        raise ValueError(f"{name} {_shown(raw)} is negative")
    return value


def parse_fraction(raw: str, name: str) -> float | None:
    """A share from 0 to 1: `3.53%` → 0.0353; a bare number above 1 is read as a percentage."""
    value = parse_number(raw, name)
    if value is None:
        return None
    if raw.strip().endswith("%") or value > 1:
        value /= 100
    if value > 1:
        raise ValueError(f"{name} {_shown(raw)} is more than 100%")
    return round(value, 6)


def parse_intents(raw: str) -> tuple[list[str], list[str]]:
    """(known intents in the cell's order, the words that are none of them)."""
    known: list[str] = []
    unknown: list[str] = []
    for token in re.split(r"[,;/|]+", raw):
        word = token.strip().lower()
        if not word:
            continue
        intent = _INTENT_LETTERS.get(word) if len(word) == 1 else (word if word in INTENTS else None)
        if intent is None:
            unknown.append(token.strip())
        elif intent not in known:
            known.append(intent)
    return known, unknown


def parse_flag(raw: str) -> bool | None:
    word = raw.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def parse_labels(raw: str) -> list[str]:
    labels = []
    for part in raw.split(","):
        label = " ".join(part.split())[:MAX_LABEL]
        if label and label not in labels:
            labels.append(label)
    return labels


def parse_trend(raw: str) -> list[float] | None:
    parts = [p for p in re.split(r"[;|]" if ";" in raw or "|" in raw else ",", raw) if p.strip()]
    if not parts:
        return None
    values = []
    for part in parts:
        value = parse_number(part, "trend")
        values.append(0.0 if value is None else value)
    return values


def cell_fields(cells: Sequence[str], plan: ColumnPlan, volume_of: Any) -> dict[str, Any]:
    """The KeywordIn fields one row's cells give under `plan`; ValueError names a cell that is not usable.

    `volume_of` parses a monthly volume cell (importing.parse_volume: `1.3K`, ranges, ...).
    """
    out: dict[str, Any] = {}
    extra: dict[str, str] = {}

    def cell(i: int) -> str:
        return cells[i] if i < len(cells) else ""

    for i, target in plan.fields.items():
        raw = cell(i)
        if is_empty(raw):
            continue
        if target == "intent":
            known, unknown = parse_intents(raw)
            if known:
                out["intent"] = known
            if unknown:  # a label we do not know is kept as written
                extra[plan.uses[i].header[:MAX_LABEL] or "intent"] = raw.strip()[:MAX_EXTRA_VALUE]
        elif target == "parent_keyword":
            out["parent_keyword"] = " ".join(raw.split())
        elif target == "currency":
            code = raw.strip().upper()
            if re.fullmatch(r"[A-Z]{3}", code):
                out["currency"] = code
            else:
                extra["Currency"] = raw.strip()[:MAX_EXTRA_VALUE]
        elif target == "competition":
            level = _LEVELS.get(raw.strip().lower())
            if level is not None:
                out["competition_level"] = level
            else:
                out["competition"] = parse_fraction(raw, "competition")
        elif target == "trend":
            out["trend"] = parse_trend(raw)
        elif target == "serp_features":
            out["serp_features"] = parse_labels(raw)[:40] or None
        elif target == "clicks":
            out["clicks"] = volume_of(raw, "clicks")
        elif target == "ctr":
            out["ctr"] = parse_fraction(raw, "ctr")
        elif target == "position":
            out["position"] = parse_number(raw, "position")
        elif target == "cpc":
            out["cpc"] = parse_number(raw, "cpc")
    flagged = [intent for i, intent in plan.intent_flags.items() if parse_flag(cell(i))]
    if flagged and "intent" not in out:
        out["intent"] = flagged
    if plan.monthly:
        months = [volume_of(cell(i), "monthly searches") for i in plan.monthly]
        if any(m is not None for m in months):
            out["trend"] = [float(m or 0) for m in months]
    if plan.cpc_currency and out.get("cpc") is not None and "currency" not in out:
        out["currency"] = plan.cpc_currency
    for i, label in plan.extra.items():
        raw = cell(i).strip()
        if not is_empty(raw):
            extra[label] = raw if len(raw) <= MAX_EXTRA_VALUE else raw[: MAX_EXTRA_VALUE - 1] + "…"
    if extra:
        out["extra"] = extra
    return {k: v for k, v in out.items() if v is not None}

