"""Keyword import parsing: planner-export CSVs in their real shapes, and normalisation for dedup."""

from __future__ import annotations

import pytest

from services.orchestrator.importing import ImportError_, dedupe, parse_csv, parse_volume
from shared.contracts import KeywordIn
from shared.text import normalise


def test_common_planner_export_shape() -> None:
    data = b'Keyword,Volume,Keyword Difficulty,CPC\nbest running shoes,1300,42,1.20\nrunning shoes sale,"2,400",,0.8\n'
    parsed = parse_csv(data)
    assert [(k.keyword, k.volume, k.difficulty) for k in parsed.keywords] == [
        ("best running shoes", 1300, 42),
        ("running shoes sale", 2400, None),
    ]
    assert parsed.problems == [] and parsed.duplicates_in_file == 0


def test_keyword_planner_utf16_tab_export_with_title_lines_and_ranges() -> None:
    text = (
        "Keyword Stats 2026-11-01 at 10_00_00\n"
        "All locations\n"
        "Keyword\tCurrency\tAvg. monthly searches\tCompetition\n"
        "café au lait\tEUR\t1K – 10K\tLow\n"
        "espresso machine\tEUR\t100K – 1M\tHigh\n"
        "  \tEUR\t10\tLow\n"
    )
    parsed = parse_csv(text.encode("utf-16"))
    assert [(k.keyword, k.volume) for k in parsed.keywords] == [("café au lait", 1000), ("espresso machine", 100000)]
    assert [(p.line, p.reason) for p in parsed.problems] == [(6, "empty keyword")]


def test_bad_rows_are_reported_with_line_and_reason_and_duplicates_counted() -> None:
    data = b"keyword;volume\nDog Training;12\ndog  training;5\ncat toys;lots\n"
    parsed = parse_csv(data)
    assert [k.keyword for k in parsed.keywords] == ["Dog Training"]
    assert parsed.duplicates_in_file == 1
    assert len(parsed.problems) == 1 and parsed.problems[0].line == 4 and "not a number" in parsed.problems[0].reason


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"Volume,CPC\n10,1\n", "no header with a keyword column"),
        (b"\xff\xfe\x00\xd8", "not valid UTF-16"),
        (b"Keyword\n\xc3\x28\n", "not valid UTF-8"),
    ],
)
def test_unusable_files_are_refused_with_the_reason(data: bytes, words: str) -> None:
    with pytest.raises(ImportError_, match=words):
        parse_csv(data)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1,300", 1300), ("1.3K", 1300), ("2M", 2_000_000), ("10K – 100K", 10_000), ("", None), ("-", None)],
)
def test_volume_formats(raw: str, value: int | None) -> None:
    assert parse_volume(raw) == value


def test_normalisation_folds_case_whitespace_and_unicode_forms() -> None:
    assert normalise("  Best\tRunning  SHOES ") == "best running shoes"
    assert normalise("ｃａｆé") == normalise("cafe\u0301") == "café"  # full-width letters, combining accent
    assert normalise("Straße") == normalise("STRASSE")
    kept, dropped = dedupe([KeywordIn(keyword="Café"), KeywordIn(keyword="cafe\u0301"), KeywordIn(keyword="tea")])
    assert [k.keyword for k in kept] == ["Café", "tea"] and dropped == 1


def test_keyword_fields_fit_their_columns() -> None:
    with pytest.raises(ValueError, match="once normalised"):
        KeywordIn(keyword="ß" * 101)  # 101 characters, 202 once casefolded
    with pytest.raises(ValueError, match="less than or equal"):
        KeywordIn(keyword="x", volume=3_000_000_000)
    assert KeywordIn(keyword="ß" * 100).keyword == "ß" * 100
