"""Keyword imports keep what the tools exported beyond keyword/volume/difficulty (issue 17): intent, CPC,
trend, SERP features, parent keyword, competition, clicks, CTR, position, and every other column as text."""

from __future__ import annotations

import codecs
from typing import Any

import pytest

from services.orchestrator.importing import parse_csv
from services.orchestrator.keyword_columns import parse_fraction, parse_intents, parse_number
from shared.contracts import KeywordIn
from tests.unit.test_importing import GSC, PLANNER, SEMRUSH, _ahrefs


def figures(data: bytes) -> list[dict[str, Any]]:
    parsed = parse_csv(data)
    assert parsed.problems == [], parsed.problems
    return [k.model_dump(exclude_none=True) for k in parsed.keywords]


def test_semrush_keeps_intent_cpc_trend_density_serp_features_and_the_rest() -> None:
    first, second = figures(SEMRUSH.encode())
    assert first == {
        "keyword": "best running shoes", "volume": 74000, "difficulty": 78,
        "intent": ["commercial", "informational"], "cpc": 1.2, "currency": "USD", "competition": 1.0,
        "trend": [0.67, 0.82, 1.0], "serp_features": ["Sitelinks", "Reviews"],
        "extra": {"Number of Results": "1250000000"},
    }  # fmt: skip
    assert second["intent"] == ["commercial"] and second["competition"] == 0.8 and "serp_features" not in second


AHREFS_EXPECTED = [
    {"keyword": "coffee grinder", "volume": 33000, "difficulty": 52, "parent_keyword": "coffee grinder", "cpc": 0.9,
     "serp_features": ["Image pack", "Video"],
     "extra": {"Country": "us", "CPS": "1.1", "Last Update": "2026-11-20", "Global volume": "81000",
               "Traffic potential": "27000"}},
    {"keyword": "burr grinder", "volume": 0, "difficulty": 31, "parent_keyword": "coffee grinder",
     "extra": {"Country": "us", "Last Update": "2026-11-20", "Global volume": "20", "Traffic potential": "500"}},
]  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [_ahrefs(",").encode(), codecs.BOM_UTF8 + _ahrefs(",").encode(), _ahrefs("\t").encode("utf-16")],
    ids=["utf-8", "utf-8 bom", "utf-16 for excel"],
)
def test_ahrefs_keeps_parent_keyword_cpc_serp_features_and_other_columns(data: bytes) -> None:
    assert figures(data) == AHREFS_EXPECTED
    uses = {c.header: c.stored_as for c in parse_csv(data).columns}
    assert uses["#"].startswith("ignored") and uses["Parent Keyword"] == "parent_keyword" and uses["CPC"] == "cpc"


def test_ahrefs_intent_columns_as_flags() -> None:
    data = (
        b"Keyword,Volume,Informational,Navigational,Commercial,Transactional,Branded,Local\n"
        b"acme shoes,10,false,true,true,false,true,false\n"
    )
    (row,) = figures(data)
    assert row["intent"] == ["navigational", "commercial", "branded"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8"])
def test_keyword_planner_keeps_currency_competition_level_bids_and_changes(encoding: str) -> None:
    first, second = figures(PLANNER.encode(encoding))
    assert first == {
        "keyword": "café au lait", "volume": 1000, "difficulty": 12, "currency": "EUR", "competition_level": "low",
        "extra": {"Three month change": "0%", "YoY change": "0%", "Top of page bid (low range)": "0.10",
                  "Top of page bid (high range)": "0.90"},
    }  # fmt: skip
    assert second["competition_level"] == "high" and second["extra"]["YoY change"] == "+5%"


def test_keyword_planner_monthly_searches_become_the_trend() -> None:
    data = (
        "Keyword\tAvg. monthly searches\tSearches: Oct 2026\tSearches: Nov 2026\tSearches: Dec 2026\n"
        "ski\t1000\t500\t1K\t\n"
    )
    (row,) = figures(data.encode("utf-16-le"))  # no BOM
    assert row["trend"] == [500.0, 1000.0, 0.0] and row["volume"] == 1000


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le"], ids=["utf-8", "utf-16 without bom"])
def test_search_console_impressions_are_the_volume_and_clicks_ctr_position_are_kept(encoding: str) -> None:
    assert figures(GSC.encode(encoding)) == [
        {"keyword": "best running shoes", "volume": 3400, "clicks": 120, "ctr": 0.0353, "position": 7.2},
        {"keyword": "trail shoes", "volume": 1210, "clicks": 4, "ctr": 0.0033, "position": 18.0},
    ]


def test_a_figure_that_is_not_a_number_fails_its_row_with_the_reason_and_unknown_labels_are_kept() -> None:
    data = b"Keyword,CPC,Intent,Position\na,abc,Commercial,1\nb,1.5,Kommerziell,2\nc,-1,,3\n"
    parsed = parse_csv(data)
    assert [(p.line, p.reason) for p in parsed.problems] == [
        (2, "cpc 'abc' is not a number"),
        (4, "cpc '-1' is negative"),
    ]
    (b,) = parsed.keywords
    assert b.intent is None and b.extra == {"Intent": "Kommerziell"} and b.cpc == 1.5


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1.20", 1.2), ("1,20", 1.2), ("$1.20", 1.2), ("1,234.56", 1234.56), ("1.234,56", 1234.56), ("-", None),
     ("€ 2", 2.0)],
)  # fmt: skip
def test_number_notations(raw: str, value: float | None) -> None:
    assert parse_number(raw, "cpc") == value


def test_fractions_intents_and_contract_bounds() -> None:
    assert parse_fraction("3.53%", "ctr") == 0.0353 and parse_fraction("0.5", "x") == 0.5
    assert parse_fraction("45", "x") == 0.45
    assert parse_intents("C, I, transactional") == (["commercial", "informational", "transactional"], [])
    assert parse_intents("i/x") == (["informational"], ["x"])
    with pytest.raises(ValueError):
        KeywordIn(keyword="a", trend=[float("nan")])
    with pytest.raises(ValueError):
        KeywordIn(keyword="a", intent=["sales"])  # type: ignore[list-item]
    item = KeywordIn(keyword="a", cpc=1.5, extra={"Country": "us"})
    assert item.metrics() == {"cpc": 1.5, "extra": {"Country": "us"}}
