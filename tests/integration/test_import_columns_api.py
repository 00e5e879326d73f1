"""Keyword tool exports through the API and the CLI: each format's extra figures are stored (columns and the
metrics JSONB), shown in the keyword view and the CSV export, filterable by intent and parent keyword, and a
re-import fills in figures a keyword lacked without overwriting what it had."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import Keyword
from tests.cli_runner import cli, json_of, ok
from tests.helpers import Tenant, create_site, import_keywords
from tests.integration.test_import_api import upload
from tests.unit.test_import_columns import AHREFS_EXPECTED
from tests.unit.test_importing import GSC, PLANNER, SEMRUSH, _ahrefs

VIEW_FIELDS = ("keyword", "volume", "difficulty", "intent", "parent_keyword", "cpc", "currency", "competition",
               "competition_level", "trend", "serp_features", "clicks", "ctr", "position", "extra")  # fmt: skip

SEMRUSH_FIRST = {"keyword": "best running shoes", "volume": 74000, "difficulty": 78,
                 "intent": ["commercial", "informational"], "cpc": 1.2, "currency": "USD", "competition": 1.0,
                 "trend": [0.67, 0.82, 1.0], "serp_features": ["Sitelinks", "Reviews"],
                 "extra": {"Number of Results": "1250000000"}}  # fmt: skip
PLANNER_FIRST = {"keyword": "café au lait", "volume": 1000, "difficulty": 12, "currency": "EUR",
                 "competition_level": "low", "extra": {"Three month change": "0%", "YoY change": "0%",
                 "Top of page bid (low range)": "0.10", "Top of page bid (high range)": "0.90"}}  # fmt: skip
GSC_FIRST = {"keyword": "best running shoes", "volume": 3400, "clicks": 120, "ctr": 0.0353, "position": 7.2}

FORMATS = [
    ("semrush.csv", SEMRUSH.encode(), SEMRUSH_FIRST),
    ("ahrefs.csv", _ahrefs(",").encode(), AHREFS_EXPECTED[0]),
    ("ahrefs-bom.csv", codecs.BOM_UTF8 + _ahrefs(",").encode(), AHREFS_EXPECTED[0]),
    ("ahrefs-excel.csv", _ahrefs("\t").encode("utf-16"), AHREFS_EXPECTED[0]),
    ("planner.csv", PLANNER.encode("utf-16"), PLANNER_FIRST),
    ("planner-no-bom.csv", PLANNER.encode("utf-16-le"), PLANNER_FIRST),
    ("gsc.csv", GSC.encode(), GSC_FIRST),
    ("gsc-utf16-no-bom.csv", GSC.encode("utf-16-le"), GSC_FIRST),
]


def shown(view: dict[str, Any]) -> dict[str, Any]:
    return {k: view[k] for k in VIEW_FIELDS if view.get(k) is not None}


@pytest.mark.parametrize(("name", "data", "first"), FORMATS, ids=[f[0] for f in FORMATS])
async def test_each_export_keeps_its_figures_and_shows_them(
    name: str, data: bytes, first: dict[str, Any], api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    r = upload(api, site, name, data)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["imported"] == 2 and body["rejected"] == []
    assert {c["stored_as"] for c in body["columns"]} >= {"keyword"} and body["columns"][0]["header"]

    views = api.get(f"/sites/{site}/keywords").json()["items"]
    assert [v["keyword"] for v in views] == [first["keyword"], views[1]["keyword"]]
    assert shown(views[0]) == first
    assert views[0]["status"] == "pending" and views[0]["source"] == f"csv:{name}" and views[0]["cluster_name"] is None

    async with db() as s:  # stored: intent and parent keyword in their columns, the rest in metrics
        row = await s.scalar(select(Keyword).where(Keyword.id == views[0]["id"]))
    assert row is not None and row.intent == first.get("intent") and row.parent_keyword == first.get("parent_keyword")
    assert row.metrics == {k: v for k, v in first.items() if k not in {"keyword", "volume", "difficulty", "intent",
                                                                         "parent_keyword"}}  # fmt: skip


def test_filters_export_and_the_cli_show_the_figures(stack: Stack, api: httpx.Client, tenant: Tenant,
                                                      tmp_path: Path) -> None:  # fmt: skip
    site = create_site(api)
    assert upload(api, site, "semrush.csv", SEMRUSH.encode()).status_code == 201
    assert upload(api, site, "ahrefs.csv", _ahrefs(",").encode()).status_code == 201

    informational = api.get(f"/sites/{site}/keywords", params={"intent": "informational"}).json()["items"]
    assert [k["keyword"] for k in informational] == ["best running shoes"]
    by_parent = api.get(f"/sites/{site}/keywords", params={"parent_keyword": "Coffee  Grinder"}).json()["items"]
    assert sorted(k["keyword"] for k in by_parent) == ["burr grinder", "coffee grinder"]
    assert api.get(f"/sites/{site}/keywords", params={"intent": "sales"}).status_code == 422
    assert api.get(f"/sites/{site}/keywords", params={"status": "clustered"}).json()["total"] == 0

    # the figures' filters combine with the content filters (status incl. disabled, text, sort) in one list
    shoes = next(k for k in informational if k["keyword"] == "best running shoes")
    toggle = f"/sites/{site}/keywords"
    assert api.patch(toggle, json={"keyword_ids": [shoes["id"]], "enabled": False}).status_code == 200
    disabled = api.get(f"/sites/{site}/keywords", params={"status": "disabled", "intent": "commercial"}).json()
    assert disabled["total"] == 1 and disabled["items"][0]["cpc"] == 1.2 and disabled["items"][0]["disabled_at"]
    pending = api.get(f"/sites/{site}/keywords", params={"status": "pending", "intent": "commercial"}).json()
    assert [k["keyword"] for k in pending["items"]] == ["running shoes for flat feet"]
    grinders = api.get(f"/sites/{site}/keywords", params={"parent_keyword": "coffee grinder", "q": "BURR",
                                                          "sort": "volume_desc"}).json()  # fmt: skip
    assert [k["keyword"] for k in grinders["items"]] == ["burr grinder"]
    assert api.patch(toggle, json={"keyword_ids": [shoes["id"]], "enabled": True}).status_code == 200

    rows = list(csv.DictReader(io.StringIO(api.get(f"/sites/{site}/keywords/export.csv").text)))
    semrush = next(r for r in rows if r["keyword"] == "best running shoes")
    assert (semrush["intent"], semrush["cpc"], semrush["serp_features"]) == ("commercial, informational", "1.2",
                                                                              "Sitelinks, Reviews")  # fmt: skip

    listed = json_of(cli(stack, "keywords", "list", site, "--intent", "commercial", "--json", key=tenant.key))
    assert {k["keyword"] for k in listed["items"]} == {"best running shoes", "running shoes for flat feet"}
    wide = ok(cli(stack, "keywords", "list", site, "--wide", key=tenant.key))
    assert "coffee grinder" in wide and "Sitelinks" in wide and "commercial" in wide
    same = ok(cli(stack, "content", "keywords", site, "--parent", "coffee grinder", "--wide", key=tenant.key))
    assert "burr grinder" in same and "running shoes" not in same and "2 keywords" in same

    export = tmp_path / "planner.tsv"
    export.write_bytes(PLANNER.encode("utf-16-le"))
    imported = ok(cli(stack, "keywords", "import", site, str(export), key=tenant.key))
    assert "2 imported" in imported and "Competition" in imported and "extra.YoY change" in imported


async def test_a_re_import_fills_in_missing_figures_and_keeps_the_known_ones(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, [{"keyword": "best running shoes", "cpc": 9.9}, {"keyword": "trail shoes"}])
    r = upload(api, site, "semrush.csv", SEMRUSH.encode())
    assert (r.json()["imported"], r.json()["duplicates"]) == (1, 1)  # counts are unchanged by the fill-in
    (known,) = api.get(f"/sites/{site}/keywords", params={"intent": "commercial", "size": 1}).json()["items"]
    assert known["keyword"] == "best running shoes" and known["cpc"] == 9.9  # kept
    assert known["intent"] == ["commercial", "informational"] and known["trend"] == [0.67, 0.82, 1.0]  # filled in
    again = upload(api, site, "semrush.csv", SEMRUSH.encode()).json()
    assert (again["imported"], again["duplicates"]) == (0, 2)
