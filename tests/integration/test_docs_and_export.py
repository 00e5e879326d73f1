"""Offline API docs (assets from an installed package, no CDN) and the spreadsheet-safe keyword export."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urljoin, urlsplit

import httpx

from devstack.stack import Stack
from tests.helpers import create_site, import_keywords


def test_docs_and_redoc_reference_only_local_assets(stack: Stack) -> None:
    for page in ("/docs", "/redoc"):
        r = httpx.get(f"{stack.api_url}{page}")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", r.text)
        assert refs, f"{page}: no assets referenced?"
        foreign = [u for u in refs if urlsplit(u).netloc or u.startswith("//")]
        assert not foreign, f"{page} loads from elsewhere: {foreign}"
        for ref in refs:
            asset = httpx.get(urljoin(f"{stack.api_url}{page}", ref))
            assert asset.status_code == 200 and asset.content, ref
    assert httpx.get(f"{stack.api_url}/openapi.json").json()["components"]["securitySchemes"].keys() == {
        "AccountKey",
        "OperatorKey",
    }


def test_keyword_export_neutralises_formula_cells(api: httpx.Client) -> None:
    site = create_site(api)
    import_keywords(
        api,
        site,
        [
            {"keyword": '=HYPERLINK("http://evil.example","click")', "volume": 10},
            {"keyword": "+1 best shoes", "volume": 20},
            {"keyword": "-rf shoes"},
            {"keyword": "@SUM(A1)"},
            {"keyword": "plain keyword", "volume": 5},
        ],
    )
    r = api.get(f"/sites/{site}/keywords/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    cells = {row["keyword"] for row in rows}
    assert cells == {
        """'=HYPERLINK("http://evil.example","click")""",
        "'+1 best shoes",
        "'-rf shoes",
        "'@SUM(A1)",
        "plain keyword",
    }
    assert {row["volume"] for row in rows} == {"10", "20", "", "5"}
