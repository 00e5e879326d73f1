"""Tenancy, generated from the orchestrator's route table: every /api/v1 route declares its kind
(services.orchestrator.web.routing) and is held to it here.

    no key                            → 401 with WWW-Authenticate (every route but public ones)
    account key on an operator route  → 403
    operator key on an account route  → 403
    tenant B's key on tenant A's ids  → 404 (never 403: ids leak nothing), while A itself is answered

A route added without a kind, or with a path id this test has no resource of tenant A for, or an account
route without ids that has no check of its own below, fails here until its scoping is thought through.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, WriterTask
from tests.helpers import CLUSTERING_ONLY, Tenant, app_operations, configure, create_site, import_keywords, wait_run

KINDS = {"public", "any_key", "account", "owner_or_operator", "operator"}
OPERATIONS = app_operations(prefix="")
API_OPERATIONS = [op for op in OPERATIONS if op[1].startswith("/api/v1")]
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}

# A valid body for each route that needs one, so that only the ids decide the answer.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/sites/{site_id}/keywords"): {"json": {"keywords": [{"keyword": "tenancy probe"}]}},
    ("POST", "/api/v1/sites/{site_id}/keywords/csv"): {"files": {"file": ("k.csv", b"Keyword\nprobe\n", "text/csv")}},
    ("PATCH", "/api/v1/sites/{site_id}/config"): {"json": {"is_enabled": False}},
    ("PUT", "/api/v1/sites/{site_id}/budget-shares"): {"json": {"shares": None}},
    ("POST", "/api/v1/drafts/{draft_id}/review"): {"json": {"decision": "rejected", "note": "probe"}},
    ("POST", "/api/v1/sites/{site_id}/parked-items/unpark"): {"json": {"items": [{"stage": 4, "item_id": 1}]}},
    ("POST", "/api/v1/accounts/{account_id}/keys"): {"json": {"name": "probe"}},
    ("POST", "/api/v1/accounts/{account_id}/credits"): {
        "json": {"amount": "1", "reason": "probe"},
        "headers": {"Idempotency-Key": "tenancy-probe"},
    },
    ("POST", "/api/v1/accounts"): {"json": {"name": "probe"}},
    ("POST", "/api/v1/sites"): {"json": {"name": "probe"}},
    ("PUT", "/api/v1/budget-shares"): {"json": {"shares": {}}},
    ("PATCH", "/api/v1/sites/{site_id}/publishing/settings"): {"json": {"auto_approval_enabled": False}},
    ("PUT", "/api/v1/drafts/{draft_id}/schedule"): {"json": {}},
    ("PUT", "/api/v1/sites/{site_id}/wordpress"): {
        "json": {"base_url": "http://127.0.0.1:9", "username": "probe", "app_password_ref": "env:PROBE"}
    },
    ("PATCH", "/api/v1/sites/{site_id}/keywords"): {"json": {"keyword_ids": [1], "enabled": False}},
    ("PATCH", "/api/v1/sites/{site_id}/clusters/{cluster_id}"): {"json": {"name": "probe"}},
    ("POST", "/api/v1/sites/{site_id}/clusters/{cluster_id}/keywords"): {"json": {"keyword_ids": [1]}},
    ("POST", "/api/v1/sites/{site_id}/clusters/{cluster_id}/merge"): {"json": {"from_cluster_id": 1}},
    ("POST", "/api/v1/sites/{site_id}/clusters/{cluster_id}/split"): {"json": {"keyword_ids": [1], "name": "p"}},
    ("PATCH", "/api/v1/drafts/{draft_id}"): {"json": {"title": "probe"}},
    ("POST", "/api/v1/drafts/{draft_id}/restore"): {"json": {"version": 1}},
    ("POST", "/api/v1/sites/{site_id}/rules"): {"json": {"name": "p", "trigger": "schedule",
                                                          "schedule": {"cron": "0 6 * * *"},
                                                          "actions": [{"type": "notify"}]}},
    ("PATCH", "/api/v1/rules/{rule_id}"): {"json": {"is_active": True}},
    ("POST", "/api/v1/rules/{rule_id}/test"): {"json": {"sample": {}}},
    ("POST", "/api/v1/webhooks"): {"json": {"url": "http://127.0.0.1:9/probe", "event_types": ["run.failed"]}},
    ("PATCH", "/api/v1/webhooks/{endpoint_id}"): {"json": {"description": "probe"}},
}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status, body
    return dict(body)


@pytest.fixture(scope="module")
async def victim(
    stack: Stack, tenant: Tenant, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> dict[str, str]:
    """Tenant A (`api`) with one resource of each kind a path can name."""
    site = create_site(api, "tenant A")
    import_keywords(api, site, [{"keyword": "alpha one"}, {"keyword": "alpha two"}])
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    run = wait_run(api, api.post(f"/sites/{site}/runs").json()["run_id"])
    async with db.begin() as s:  # a draft of A's site (a whole run to stage 4 is the e2e test's job)
        cluster = Cluster(site_id=site, name=f"c{uuid.uuid4().hex[:6]}", name_norm=uuid.uuid4().hex, intent="x",
                          centroid=b"", size=0)
        s.add(cluster)
        await s.flush()
        idea = Idea(site_id=site, cluster_id=cluster.id, seq=0, title="t", content_type="guide", intent="x",
                    primary_keyword="alpha", target_words=500, brief="b")
        s.add(idea)
        await s.flush()
        task = WriterTask(site_id=site, idea_id=idea.id, title="t")
        s.add(task)
        await s.flush()
        draft = Draft(site_id=site, task_id=task.id, title="A's draft", slug="a", meta_title="m", meta_description="d",
                      body_markdown="x", body_html="<p>x</p>", word_count=1, target_words=500, quality_score=90)
        s.add(draft)
        await s.flush()
        draft_id = draft.id
        # An image of A's draft, with its file in the media store (served by GET /images/{image_id}).
        png = stack.media_dir / "tenancy" / f"{uuid.uuid4().hex}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", (1, 1)).save(png)
        prompt = ImagePrompt(site_id=site, draft_id=draft_id, position=0, placement="featured", prompt="p",
                             alt_text="a", caption="c")
        s.add(prompt)
        await s.flush()
        image = Image(site_id=site, prompt_id=prompt.id, draft_id=draft_id, path=str(png), checksum_sha256="0" * 64,
                      size_bytes=png.stat().st_size, mime="image/png", width=1, height=1)
        s.add(image)
        await s.flush()
        cluster_id, image_id = cluster.id, image.id
    key_id = api.get(f"/accounts/{tenant.account_id}/keys").json()[0]["id"]
    # Automation (issue 15): a webhook endpoint with a delivery, a rule with a scheduled task.
    endpoint = api.post("/webhooks", json={"url": "http://127.0.0.1:9/victim", "event_types": ["run.failed"]}).json()
    delivery = api.post(f"/webhooks/{endpoint['id']}/test").json()
    rule = api.post(f"/sites/{site}/rules", json=BODIES[("POST", "/api/v1/sites/{site_id}/rules")]["json"]).json()
    task = api.post(f"/rules/{rule['id']}/execute").json()
    return {
        "site_id": site,
        "run_id": run["run_id"],
        "draft_id": str(draft_id),
        "account_id": tenant.account_id,
        "key_id": key_id,
        "row_id": "1",
        "cluster_id": str(cluster_id),
        "image_id": str(image_id),
        "endpoint_id": endpoint["id"],
        "delivery_id": str(delivery["id"]),
        "rule_id": rule["id"],
        "task_id": str(task["id"]),
    }


def url_of(path: str, ids: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)}", path)
    missing = [n for n in names if n not in ids]
    assert not missing, f"{path}: no resource of tenant A for {missing}; add one to the `victim` fixture"
    return path.format(**{n: ids[n] for n in names}).removeprefix("/api/v1")


def test_every_route_declares_a_kind() -> None:
    unclassified = [f"{m} {p}" for m, p, kind in OPERATIONS if kind not in KINDS]
    assert not unclassified, f"routes without a kind (KindRouter): {unclassified}"
    assert all(kind == "public" for _, p, kind in OPERATIONS if not p.startswith("/api/v1")), "public routes only"


@pytest.mark.parametrize(("method", "path", "kind"), API_OPERATIONS, ids=str)
def test_no_key_is_401(stack: Stack, method: str, path: str, kind: str) -> None:
    if kind == "public":
        return
    target = re.sub(r"{\w+}", "x", path)
    r = httpx.request(method, f"{stack.api_url}{target}", timeout=30, **BODIES.get((method, path), {}))
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    bad = httpx.request(method, f"{stack.api_url}{target}", timeout=30, headers={"Authorization": "Bearer cl_nope"})
    assert_problem(bad, 401)


@pytest.mark.parametrize(("method", "path", "kind"), API_OPERATIONS, ids=str)
def test_wrong_kind_of_key_is_403(
    method: str, path: str, kind: str, other_tenant: httpx.Client, operator: httpx.Client
) -> None:
    target = re.sub(r"{\w+}", "x", path).removeprefix("/api/v1")
    body = BODIES.get((method, path), {})
    if kind == "operator":
        assert_problem(other_tenant.request(method, target, **body), 403)
    elif kind == "account":
        assert_problem(operator.request(method, target, **body), 403)


def _sites_are_created_for_the_caller(victim: dict[str, str], other: httpx.Client, owner: httpx.Client) -> None:
    created = other.post("/sites", json={"name": "B's site"})
    assert created.status_code == 201 and created.json()["account_id"] != victim["account_id"]
    assert other.post("/sites", json={"name": "x", "account_id": victim["account_id"]}).status_code == 422


def _site_lists_are_the_callers_own(victim: dict[str, str], other: httpx.Client, owner: httpx.Client) -> None:
    assert victim["site_id"] in {s["id"] for s in owner.get("/sites", params={"size": 500}).json()}
    assert victim["site_id"] not in {s["id"] for s in other.get("/sites", params={"size": 500}).json()}


def _webhooks_are_created_for_the_caller(victim: dict[str, str], other: httpx.Client, owner: httpx.Client) -> None:
    made = other.post("/webhooks", json={"url": "http://127.0.0.1:9/b", "event_types": ["run.failed"]})
    assert made.status_code == 201, made.text
    assert made.json()["id"] not in {e["id"] for e in owner.get("/webhooks").json()}
    assert other.post("/webhooks", json={"url": "http://127.0.0.1:9/b", "event_types": ["run.failed"],
                                         "account_id": victim["account_id"]}).status_code == 422
    assert other.delete(f"/webhooks/{made.json()['id']}").status_code == 204


def _webhook_lists_are_the_callers_own(victim: dict[str, str], other: httpx.Client, owner: httpx.Client) -> None:
    assert victim["endpoint_id"] in {e["id"] for e in owner.get("/webhooks").json()}
    assert victim["endpoint_id"] not in {e["id"] for e in other.get("/webhooks").json()}


# Account routes without an id in their path: what scoping means for each is checked by name.
WITHOUT_IDS: dict[tuple[str, str], Callable[[dict[str, str], httpx.Client, httpx.Client], None]] = {
    ("POST", "/api/v1/sites"): _sites_are_created_for_the_caller,
    ("GET", "/api/v1/sites"): _site_lists_are_the_callers_own,
    ("POST", "/api/v1/webhooks"): _webhooks_are_created_for_the_caller,
    ("GET", "/api/v1/webhooks"): _webhook_lists_are_the_callers_own,
}


@pytest.mark.parametrize(("method", "path", "kind"), API_OPERATIONS, ids=str)
def test_another_tenants_ids_are_not_found(
    method: str, path: str, kind: str, victim: dict[str, str], api: httpx.Client, other_tenant: httpx.Client
) -> None:
    if kind not in {"account", "owner_or_operator"}:
        return
    if "{" not in path:
        check = WITHOUT_IDS.get((method, path))
        assert check is not None, f"{method} {path} has no ids: add a scoping check for it to WITHOUT_IDS"
        check(victim, other_tenant, api)
        return
    target = url_of(path, victim)
    r = other_tenant.request(method, target, **BODIES.get((method, path), {}))
    assert_problem(r, 404)
    if method == "GET":  # the same request from A itself is answered: the 404 was about whose id it is
        assert api.request(method, target).status_code == 200
