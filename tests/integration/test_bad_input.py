"""No input breaks the API: every case of issue 9's "No input breaks it" that reaches the API gets a 4xx
problem body naming the field and the reason, leaves no partial rows, and the API stays healthy.

(How single CSV cells are parsed is importing.py's business and tested there; here bad files only have
to be refused or reported as a whole, through the API, without a 5xx and without half an import.)
"""

from __future__ import annotations

import codecs
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import Account, Keyword, Site
from tests.helpers import create_site

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def problem(r: httpx.Response, status: int = 422, field: str | None = None) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with `status`; for 422, some error names `field`."""
    assert r.status_code == status, f"{r.request.method} {r.request.url} → {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status and body["detail"], body
    if field is not None:
        fields = [e["field"] for e in body["errors"]]
        assert any(field in f for f in fields), f"no error names {field!r}: {body['errors']}"
        assert all(e["reason"] for e in body["errors"])
    return dict(body)


def raw(client: httpx.Client, method: str, url: str, text: str) -> httpx.Response:
    """A JSON body sent as written (json.dumps would never produce NaN tokens or lone-surrogate escapes)."""
    return client.request(method, url, content=text.encode(), headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def site(api: httpx.Client) -> str:
    return create_site(api, "bad input")


async def counts(db: async_sessionmaker[AsyncSession], site: str) -> tuple[int, int, int]:
    async with db() as s:
        keywords = await s.scalar(select(func.count()).select_from(Keyword).where(Keyword.site_id == site))
        sites = await s.scalar(select(func.count()).select_from(Site))
        accounts = await s.scalar(select(func.count()).select_from(Account))
    return int(keywords or 0), int(sites or 0), int(accounts or 0)


TEXT_CASES = [
    # (method, url template, raw JSON body, the field the error must name)
    ("POST", "/sites", '{"name": "a\\u0000b"}', "body.name"),
    ("POST", "/sites", '{"name": "bell\\u0007"}', "body.name"),
    ("POST", "/sites", '{"name": "\\ud800"}', "body.name"),
    ("POST", "/sites", '{"name": "ok", "domain": "x\\u001fy"}', "body.domain"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "nul\\u0000here"}]}', "body.keywords.0.keyword"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "ok"}, {"keyword": "\\udfff"}]}',
     "body.keywords.1.keyword"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "fine"}], "source": "s\\u0000"}', "body.source"),
    ("PATCH", "/sites/{site}/config", '{"options": {"brand_notes": "x\\u0000"}}', "body.options.brand_notes"),
    ("PATCH", "/sites/{site}/config", '{"options": {"banned_words": ["\\ud83d"]}}', "body.options.banned_words.0"),
    ("PATCH", "/sites/{site}/config", '{"options": {"prompt_templates": {"k\\u0000": "v"}}}', "body.options"),
]
NUMBER_CASES = [
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "a", "volume": NaN}]}', "body.keywords.0.volume"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "a", "volume": Infinity}]}',
     "body.keywords.0.volume"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "a", "volume": 1e309}]}', "body.keywords.0.volume"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "a", "volume": -5}]}', "body.keywords.0.volume"),
    ("POST", "/sites/{site}/keywords", '{"keywords": [{"keyword": "a", "volume": 99999999999999999999999}]}',
     "body.keywords.0.volume"),
    ("PATCH", "/sites/{site}/config", '{"delay_between_batches_seconds": -Infinity}',
     "body.delay_between_batches_seconds"),
    ("PATCH", "/sites/{site}/config", '{"limits": {"max_credits_per_run": NaN}}', "body.limits.max_credits_per_run"),
    ("PATCH", "/sites/{site}/config", '{"batch_sizes": {"1": 340282366920938463463374607431768211457}}',
     "body.batch_sizes"),
    ("PATCH", "/sites/{site}/config", '{"timezone": "Europe"}', "body.timezone"),
    ("PATCH", "/sites/{site}/config", '{"timezone": "' + "A" * 300 + '"}', "body.timezone"),
    ("PATCH", "/sites/{site}/config", '{"timezone": "../../etc/passwd"}', "body.timezone"),
    ("PATCH", "/sites/{site}/config", '{"timezone": "Europe/Berlin\\u0000"}', "body.timezone"),
    ("POST", "/sites", '{"name": ' + "[" * 5000 + "]" * 5000 + "}", "body"),
    ("POST", "/sites", '{"name": "x"', "body"),
    ("POST", "/sites", '[1, 2]', "body"),
    ("POST", "/sites", '{"name": 1' + "0" * 5000 + "}", "body"),
]
PATH_AND_QUERY_CASES = [
    ("GET", "/drafts/99999999999999999999999", "path.draft_id"),
    ("GET", "/drafts/-1", "path.draft_id"),
    ("POST", "/drafts/340282366920938463463374607431768211457/publish", "path.draft_id"),
    ("GET", "/sites/a%00b", "path.site_id"),
    ("GET", "/sites/a%07b/config", "path.site_id"),
    ("GET", "/sites/%ED%A0%80", "path.site_id"),
    ("GET", "/sites/" + "x" * 300, "path.site_id"),
    ("GET", "/runs/r%0Aun", "path.run_id"),
    ("GET", "/sites/{site}/runs?page=99999999999999999999999", "query.page"),
    ("GET", "/sites/{site}/runs?size=99999999999999999999999", "query.size"),
    ("GET", "/sites/{site}/runs?page=0", "query.page"),
    ("GET", "/sites/{site}/runs?page=NaN", "query.page"),
    ("GET", "/sites?page=1e309", "query.page"),
    ("GET", "/runs/x/activity?stage=99999999999999999999", "query.stage"),
]
BAD_FILES = {
    "nul.csv": b"Keyword,Volume\nfine,10\nnul\x00inside,20\n",
    "utf16-no-bom.csv": "Keyword\tVolume\nbest shoes\t10\n".encode("utf-16-le"),
    "huge-cell.csv": b"Keyword,Volume\n" + b"x" * 200_000 + b",5\n",
    "unterminated.csv": b'Keyword,Volume\n"unterminated,5\nother,6\n',
    "negative.csv": b"Keyword,Volume\nminus five,-5\n",
    "overflow.csv": b"Keyword,Volume\nhuge,1e309\n",
    "invalid-utf8.csv": b"Keyword\n\xff\xfe\xfa\xfb broken\n",
    "binary.csv": bytes(range(256)) * 20,
    "empty.csv": b"",
    "bom-only.csv": codecs.BOM_UTF8,
}


async def test_bad_text_numbers_and_json_are_422_naming_the_field(
    api: httpx.Client, site: str, db: async_sessionmaker[AsyncSession]
) -> None:
    before = await counts(db, site)
    for method, url, body, field in TEXT_CASES + NUMBER_CASES:
        problem(raw(api, method, url.format(site=site), body), 422, field)
    assert await counts(db, site) == before  # no partial rows: no keyword, site or account appeared
    assert api.get(f"/sites/{site}/config").json()["config"]["timezone"] == "UTC"


async def test_bad_path_ids_and_paging_are_422(api: httpx.Client, operator: httpx.Client, site: str) -> None:
    for method, url, field in PATH_AND_QUERY_CASES:
        problem(api.request(method, url.format(site=site)), 422, field)
    problem(operator.post("/ops/outbox/99999999999999999999999/retry"), 422, "path.row_id")
    problem(operator.get("/accounts", params={"page": 10**30}), 422, "query.page")


async def test_operator_inputs_are_checked_too(operator: httpx.Client, db: async_sessionmaker[AsyncSession]) -> None:
    before = await counts(db, "-")
    problem(raw(operator, "POST", "/accounts", '{"name": "x", "initial_credits": NaN}'), 422, "body.initial_credits")
    problem(raw(operator, "POST", "/accounts", '{"name": "x", "initial_credits": 1e309}'), 422, "body.initial_credits")
    problem(raw(operator, "POST", "/accounts", '{"name": "x", "initial_credits": -5}'), 422, "body.initial_credits")
    problem(raw(operator, "POST", "/accounts", '{"name": "x\\u0000"}'), 422, "body.name")
    problem(raw(operator, "POST", "/accounts", '{"id": "a/b", "name": "x"}'), 422, "body.id")
    problem(raw(operator, "PUT", "/budget-shares", '{"shares": {"clustering": NaN}}'), 422, "body.shares")
    problem(raw(operator, "PUT", "/budget-shares", '{"shares": {"clustering": 100}}'), 422, "body.shares")
    assert await counts(db, "-") == before


async def test_bad_csv_files_are_refused_or_reported_never_half_imported(
    api: httpx.Client, site: str, db: async_sessionmaker[AsyncSession]
) -> None:
    for name, data in BAD_FILES.items():
        before = await counts(db, site)
        r = api.post(f"/sites/{site}/keywords/csv", files={"file": (name, data, "text/csv")})
        assert r.status_code < 500, f"{name}: {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            problem(r, r.status_code)
            assert await counts(db, site) == before, f"{name}: refused, yet rows were written"
        else:
            body = r.json()
            assert body["received"] == body["imported"] + body["duplicates"] + len(body["rejected"]), body
    problem(api.post(f"/sites/{site}/keywords/csv", files={"file": ("bad\x00name.csv", b"x", "text/csv")}), 422)
    problem(api.post(f"/sites/{site}/keywords/csv", data={"file": "not a file"}), 422, "file")


async def test_framework_errors_share_the_problem_shape(stack: Stack, api: httpx.Client, site: str) -> None:
    problem(api.get("/no/such/route"), 404)
    r = problem(api.delete(f"/sites/{site}"), 405)
    assert r["title"] == "Method Not Allowed"
    problem(api.post("/sites", content=b"name=x", headers={"Content-Type": "text/plain"}), 422)
    too_big = api.post(f"/sites/{site}/keywords", content=b"[" + b"1," * 14_000_000 + b"1]",
                       headers={"Content-Type": "application/json"})
    problem(too_big, 413)
    problem(httpx.get(f"{stack.api_url}/api/v1/sites"), 401)


def test_api_is_healthy_afterwards(stack: Stack, api: httpx.Client, site: str) -> None:
    assert httpx.get(f"{stack.api_url}/health").json()["status"] == "ok"
    r = api.post(f"/sites/{site}/keywords", json={"keywords": [{"keyword": "still works", "volume": 5}]})
    assert r.status_code == 201 and r.json()["imported"] == 1
