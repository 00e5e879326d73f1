"""Keyword import parsing: planner-export CSVs in their real shapes, bad input of every kind, and
normalisation for dedup."""

from __future__ import annotations

import codecs
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    [
        ("1,300", 1300),
        ("1.300", 1300),
        ("1 300", 1300),
        ("1\u00a0300\u00a0000", 1_300_000),
        ("1300.0", 1300),
        ("1.3K", 1300),
        ("1,3k", 1300),
        ("2M", 2_000_000),
        ("10K – 100K", 10_000),
        ("0-10", 0),
        ("1 000 – 10 000", 1000),
        ("", None),
        ("-", None),
        ("n/a", None),
        (" 42 ", 42),
    ],
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


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("-5", "'-5' is negative"),
        ("−5", "is negative"),
        ("1e309", "'1e309' is not a number"),
        ("NaN", "'NaN' is not a number"),
        ("inf", "'inf' is not a number"),
        ("-inf", "is not a number"),
        ("Infinity", "is not a number"),
        ("12.5", "'12.5' is not a whole number"),
        ("1,2,3", "is not a number"),
        ("1,300.5", "is not a number"),
        ("99999999999", "is larger than 2000000000"),
        ("9" * 5000, "is not a number"),
        ("lots", "'lots' is not a number"),
    ],
)
def test_volumes_that_are_not_whole_non_negative_numbers_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_volume(raw)


# ------------------------------------------------------------------------ the exports people upload

SEMRUSH = (
    "Keyword,Intent,Volume,Trend,Keyword Difficulty,CPC (USD),Competitive Density,SERP Features,Number of Results\n"
    'best running shoes,"Commercial, Informational",74000,"0.67,0.82,1.00",78,1.2,1,"Sitelinks, Reviews",1250000000\n'
    'running shoes for flat feet,Commercial,8100,"0.5,0.6,0.7",45,0.9,0.8,,32000000\n'
)
AHREFS_HEADER = [
    "#",
    "Keyword",
    "Country",
    "Difficulty",
    "Volume",
    "CPC",
    "CPS",
    "Parent Keyword",
    "Last Update",
    "SERP Features",
    "Global volume",
    "Traffic potential",
]
AHREFS_ROWS = [
    [
        "1",
        "coffee grinder",
        "us",
        "52",
        "33000",
        "0.9",
        "1.1",
        "coffee grinder",
        "2026-11-20",
        "Image pack, Video",
        "81000",
        "27000",
    ],
    ["2", "burr grinder", "us", "31", "0-10", "", "", "coffee grinder", "2026-11-20", "", "20", "500"],
]
PLANNER = (
    "Keyword Stats 2026-11-01 at 10_00_00\n"
    "All locations\n"
    "Keyword\tCurrency\tAvg. monthly searches\tThree month change\tYoY change\tCompetition\t"
    "Competition (indexed value)\tTop of page bid (low range)\tTop of page bid (high range)\n"
    "café au lait\tEUR\t1K – 10K\t0%\t0%\tLow\t12\t0.10\t0.90\n"
    "espresso machine\tEUR\t100K – 1M\t-10%\t+5%\tHigh\t88\t0.40\t2.10\n"
)
GSC = (
    "Top queries,Clicks,Impressions,CTR,Position\n"
    "best running shoes,120,3400,3.53%,7.2\n"
    'trail shoes,4,"1,210",0.33%,18\n'
)


def _ahrefs(delimiter: str) -> str:
    def line(cells: list[str]) -> str:
        return delimiter.join(f'"{c}"' if delimiter in c or "," in c else c for c in cells) + "\n"

    return "".join(line(r) for r in [AHREFS_HEADER, *AHREFS_ROWS])


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("semrush", SEMRUSH.encode(), [("best running shoes", 74000, 78), ("running shoes for flat feet", 8100, 45)]),
        ("ahrefs utf-8", _ahrefs(",").encode(), [("coffee grinder", 33000, 52), ("burr grinder", 0, 31)]),
        (
            "ahrefs utf-8 bom",
            codecs.BOM_UTF8 + _ahrefs(",").encode(),
            [("coffee grinder", 33000, 52), ("burr grinder", 0, 31)],
        ),
        ("ahrefs for excel", _ahrefs("\t").encode("utf-16"), [("coffee grinder", 33000, 52), ("burr grinder", 0, 31)]),
        ("planner utf-16", PLANNER.encode("utf-16"), [("café au lait", 1000, 12), ("espresso machine", 100_000, 88)]),
        (
            "planner utf-16le, no bom",
            PLANNER.encode("utf-16-le"),
            [("café au lait", 1000, 12), ("espresso machine", 100_000, 88)],
        ),
        (
            "planner utf-16be, no bom",
            PLANNER.encode("utf-16-be"),
            [("café au lait", 1000, 12), ("espresso machine", 100_000, 88)],
        ),
        ("planner utf-8", PLANNER.encode(), [("café au lait", 1000, 12), ("espresso machine", 100_000, 88)]),
        ("search console", GSC.encode(), [("best running shoes", 3400, None), ("trail shoes", 1210, None)]),
        (
            "search console crlf",
            GSC.replace("\n", "\r\n").encode(),
            [("best running shoes", 3400, None), ("trail shoes", 1210, None)],
        ),
    ],
)
def test_supported_exports(name: str, data: bytes, expected: list[tuple[str, int, int | None]]) -> None:
    parsed = parse_csv(data)
    assert [(k.keyword, k.volume, k.difficulty) for k in parsed.keywords] == expected, name
    assert parsed.problems == [] and parsed.duplicates_in_file == 0


def test_utf16_without_bom_with_non_latin_keywords() -> None:
    text = "Keyword\tVolume\n東京 旅行\t1000\nкофемолка ручная\t590\nقهوة\t10\n"
    assert [k.keyword for k in parse_csv(text.encode("utf-16-le")).keywords] == [
        "東京 旅行",
        "кофемолка ручная",
        "قهوة",
    ]


# ---------------------------------------------------------------------------- input that must not break it

H = "Keyword,Volume\n"


@pytest.mark.parametrize(
    ("case", "data", "imported", "problems"),
    [
        (
            "NUL in a cell",
            f"{H}ok,1\nfoo\x00bar,5\n",
            ["ok"],
            [(3, "column 'Keyword' contains the control character U+0000")],
        ),
        (
            "C0 control in another cell",
            "Keyword,Volume,CPC\nfoo,5,1\x07\nok,6,1\n",
            ["ok"],
            [(2, "column 'CPC' contains the control character U+0007")],
        ),
        ("escape character", f"{H}\x1b[31mred,5\nok,1\n", ["ok"], [(2, "control character U+001B")]),
        ("C1 control", f"{H}a\x85b,5\nok,1\n", ["ok"], [(2, "control character U+0085")]),
        ("tab inside a quoted keyword", f'{H}"a\tb",5\nok,1\n', ["ok"], [(2, "keyword contains a tab or line break")]),
        (
            "cell over the csv field limit",
            f"{H}{'x' * 200_000},5\nok,6\n",
            ["ok"],
            [(2, "longer than 131072 characters")],
        ),
        (
            "keyword over 200 characters",
            f"{H}{'x' * 201},5\nok,6\n",
            ["ok"],
            [(2, "keyword: String should have at most 200 characters")],
        ),
        ("negative volume", f"{H}ok,1\nminus,-5\n", ["ok"], [(3, "volume '-5' is negative")]),
        ("1e309", f"{H}ok,1\nhuge,1e309\n", ["ok"], [(3, "volume '1e309' is not a number")]),
        ("NaN", f"{H}ok,1\nnan,NaN\n", ["ok"], [(3, "volume 'NaN' is not a number")]),
        ("inf", f"{H}ok,1\ninf,inf\n", ["ok"], [(3, "volume 'inf' is not a number")]),
        ("volume beyond 32 bits", f"{H}ok,1\nbig,3000000000\n", ["ok"], [(3, "is larger than 2000000000")]),
        (
            "difficulty over 100",
            "Keyword,Volume,KD\nok,1,5\nhard,1,101\n",
            ["ok"],
            [(3, "difficulty: Input should be less than or equal to 100")],
        ),
        (
            "unterminated quote at the end",
            f'{H}ok,1\n"unterminated,5\nfoo,6\n',
            ["ok"],
            [(3, "unterminated quote: the quoted cell opened on line 3")],
        ),
        (
            "unterminated quote closed later",
            f'{H}"unterminated,5\nfoo,6\n"bar",7\nbaz,8\n',
            ["baz"],
            [(2, "quoted cell opened on line 2 closes on line 4")],
        ),
        ("quoted keyword over several lines", f'{H}"two\nlines",5\nok,1\n', ["ok"], [(2, "keyword spans lines 2–3")]),
        ("text after a closing quote", f'{H}"abc"def,5\nok,1\n', ["ok"], [(2, "text after a closing quote")]),
        (
            "only zero-width characters",
            f"{H}\u200b\u200d,5\nok,1\n",
            ["ok"],
            [(2, "keyword has no visible characters")],
        ),
        ("empty keyword", f"{H},5\nok,1\n", ["ok"], [(2, "empty keyword")]),
        ("blank rows are skipped", f"{H}\n,,\n  \nok,1\n", ["ok"], []),
        (
            "zero-width duplicate",
            f"{H}best tea,1\nbest\u200b tea,2\nBEST\u00adTEA,3\n",
            ["best tea", "BEST\u00adTEA"],
            [],
        ),
        ("classic Mac line ends", "Keyword,Volume\rfoo,1\rbar,2\r", ["foo", "bar"], []),
        (
            "NUL-heavy line among good ones",
            f"{H}ok,1\n" + "\x00" * 30 + ",3\nfine,2\n",
            ["ok", "fine"],
            [(3, "U+0000")],
        ),
    ],
)
def test_bad_rows_are_rejected_with_their_line(
    case: str, data: str, imported: list[str], problems: list[tuple[int, str]]
) -> None:
    parsed = parse_csv(data.encode())
    assert [k.keyword for k in parsed.keywords] == imported, case
    assert [p.line for p in parsed.problems] == [line for line, _ in problems], (case, parsed.problems)
    for problem, (_, words) in zip(parsed.problems, problems, strict=True):
        assert words in problem.reason, (case, problem.reason)


@pytest.mark.parametrize(
    ("case", "data", "words"),
    [
        (
            "UTF-8 with an encoded surrogate",
            b"Keyword\nok\nfoo\xed\xa0\x80\n",
            "not valid UTF-8 text: invalid continuation byte at line 3",
        ),
        (
            "Latin-1 file",
            b"Keyword,Volume\nok,1\ncaf\xe9,5\n",
            "not valid UTF-8 text: invalid continuation byte at line 3",
        ),
        (
            "UTF-16 with a lone surrogate",
            codecs.BOM_UTF16_LE + "Keyword\nok\n".encode("utf-16-le") + b"\x00\xd8a\x00",
            "not valid UTF-16 text: illegal UTF-16 surrogate at line 3",
        ),
        (
            "UTF-16 cut in the middle of a character",
            "Keyword\nok\n".encode("utf-16") + b"x",
            "not valid UTF-16 text: truncated data",
        ),
        ("xlsx workbook", b"PK\x03\x04\x14\x00\x06\x00", "xlsx workbook"),
        ("xls workbook", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls workbook"),
        ("binary", b"\x00\x01\x02\x03" * 100, "no header with a keyword column"),
        ("image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not valid UTF-8 text: invalid start byte at line 1"),
        ("empty file", b"", "no header with a keyword column"),
        ("Search Console page export", b"Top pages,Clicks,Impressions\n/a,1,2\n", "no header with a keyword column"),
        (
            "too many rows",
            ("Keyword\n" + "".join(f"k{i}\n" for i in range(100_001))).encode(),
            "at most 100000 per import",
        ),
    ],
)
def test_files_that_cannot_be_used_are_refused_with_the_reason(case: str, data: bytes, words: str) -> None:
    with pytest.raises(ImportError_, match=re.escape(words)):
        parse_csv(data)


_CSVISH = st.text(
    alphabet=st.sampled_from(list('Keyword,Volume\t;"\n\r -–.1059eEkKMnaNif%\x00\x07\u200b\u00a0é🙂\ufeff\ud800')),
    max_size=300,
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        _CSVISH.map(lambda t: ("Keyword,Volume\n" + t).encode("utf-8", "surrogatepass")),
        _CSVISH.map(lambda t: ("Keyword\tVolume\n" + t).encode("utf-16-le", "surrogatepass")),
    )
)
def test_parse_csv_raises_nothing_but_its_own_error(data: bytes) -> None:
    try:
        parsed = parse_csv(data)
    except ImportError_:
        return
    for item in parsed.keywords:
        assert item.keyword.strip() and not re.search(r"[\x00-\x1f\x7f-\x9f]", item.keyword)
        assert item.volume is None or 0 <= item.volume <= 2_000_000_000
    assert all(p.line >= 1 and p.reason for p in parsed.problems)


# ------------------------------------------------------------------------------------------- normalise


def test_normalisation_folds_zero_width_and_other_format_characters() -> None:
    plain = normalise("best running shoes")
    for hidden in (
        "\u200b",
        "\u200c",
        "\u200d",
        "\u2060",
        "\ufeff",
        "\u00ad",
        "\u200e",
        "\u202e",
        "\u2066",
        "\U000e0041",
    ):
        assert normalise(f"best run{hidden}ning shoes") == plain, repr(hidden)
    assert normalise("best\u200b running  shoes\u200b") == plain
    assert normalise("cafe\u200b\u0301") == normalise("café")  # NFKC composes across where the ZWSP was
    assert normalise("❤\ufe0f coffee") == normalise("❤ coffee")  # variation selector
    kept, dropped = dedupe([KeywordIn(keyword="best tea"), KeywordIn(keyword="Best \u200btea")])
    assert [k.keyword for k in kept] == ["best tea"] and dropped == 1


def _previous_normalise(text: str) -> str:  # what keyword_norm and cluster names were stored with
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


_HIDDEN = {0x034F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=0, max_value=40))
def test_normalise_is_stable_idempotent_and_blind_to_format_characters(text: str, at: int) -> None:
    key = normalise(text)
    assert normalise(key) == key
    assert normalise(text[:at] + "\u200b" + text[at:]) == key
    if not any(unicodedata.category(c) == "Cf" or ord(c) in _HIDDEN for c in text):
        assert key == _previous_normalise(text)  # plain text keeps the key it was stored with


def test_format_characters_live_only_in_the_planes_normalise_scans() -> None:
    import sys

    from shared.text import FORMAT_PLANES

    planes = {cp >> 16 for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"}
    assert planes <= set(FORMAT_PLANES)
