"""Keyword import over the REST API: planner CSV uploads, their bad rows, and files that cannot be used."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers import create_site

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "keywords.csv"


def upload(api: httpx.Client, site: str, name: str, data: bytes) -> httpx.Response:
    return api.post(f"/sites/{site}/keywords/csv", files={"file": (name, data, "text/csv")})


def test_csv_upload_imports_dedupes_and_reports_bad_rows(api: httpx.Client) -> None:
    site = create_site(api)
    data = b"Keyword,Volume\nBest Hiking Boots,900\nbest  hiking boots,100\nhiking socks,lots\n,5\ntrail map,40\n"
    r = upload(api, site, "planner.csv", data)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["imported"], body["duplicates"], body["received"]) == (2, 1, 5)
    assert [(p["line"], "not a number" in p["reason"] or p["reason"]) for p in body["rejected"]] == [
        (4, True),
        (5, "empty keyword"),
    ]
    again = upload(api, site, "planner.csv", data).json()  # importing twice adds nothing
    assert again["imported"] == 0 and again["duplicates"] == 3
    assert api.get(f"/sites/{site}/pipeline").json()["pending"][0]["pending"] == 2


def test_bundled_example_file_imports(api: httpx.Client) -> None:
    site = create_site(api)
    body = upload(api, site, "keywords.csv", EXAMPLES.read_bytes()).json()
    assert body["imported"] >= 300 and body["imported"] + body["duplicates"] == body["received"]
    assert body["rejected"] == []


def test_unusable_uploads_get_a_reason(api: httpx.Client) -> None:
    site = create_site(api)
    r = upload(api, site, "export.csv", b"Volume,CPC\n10,1\n")
    assert r.status_code == 422 and "no header with a keyword column" in r.json()["detail"]
    r = upload(api, site, "export.csv", b"Keyword\n\xc3\x28\n")
    assert r.status_code == 422 and "not valid UTF-8" in r.json()["detail"]
    r = upload(api, site, "empty.csv", b"Keyword,Volume\n,1\n")
    assert r.status_code == 422 and "no importable keyword rows" in r.text
    assert upload(api, "no-such-site", "k.csv", b"Keyword\nx\n").status_code == 404
    assert api.post(f"/sites/{site}/keywords", json={"keywords": []}).status_code == 422
    assert api.post(f"/sites/{site}/keywords", json={"keywords": [{"keyword": "x", "volume": -1}]}).status_code == 422
