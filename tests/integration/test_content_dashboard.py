"""The dashboard's HTTP side without a browser: its route table held to tenancy (every route that names a
site, run, draft, image or cluster answers 404 to another account's session, generated from the routes),
the session cookie's flags, CSRF, sign-out and revoked keys, and the push stream fed by run events."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Mount

from devstack.stack import Stack
from services.orchestrator.web.routing import api_routes
from shared.db.models import Cluster, Draft, Idea, Image, ImagePrompt, WriterTask
from tests.conftest import OPERATOR_KEY
from tests.helpers import CLUSTERING_ONLY, Tenant, configure, create_site, import_keywords, keyword_set, wait_run

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
SIGNIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
HEADING = re.compile(r'id="stage-bar-title">([^<]*)')

# A valid form for each state-changing page that needs one, so that only the ids decide the answer.
FORMS: dict[str, dict[str, Any]] = {
    "/dashboard/sites/{site_id}/config": {"is_enabled": ""},
    "/dashboard/sites/{site_id}/keywords/status": {"keyword_ids": "1", "enabled": "false"},
    "/dashboard/sites/{site_id}/keywords/move": {"keyword_ids": "1", "cluster_id": "1"},
    "/dashboard/sites/{site_id}/clusters/{cluster_id}/rename": {"name": "probe"},
    "/dashboard/sites/{site_id}/clusters/{cluster_id}/merge": {"into_cluster_id": "1"},
    "/dashboard/sites/{site_id}/clusters/{cluster_id}/split": {"keyword_ids": "1", "name": "probe"},
    "/dashboard/sites/{site_id}/clusters/{cluster_id}/move": {"keyword_ids": "1", "to_cluster_id": "1"},
    "/dashboard/drafts/{draft_id}/decide": {"decision": "rejected", "note": "probe"},
    "/dashboard/drafts/{draft_id}/edit": {
        "title": "t",
        "meta_title": "m",
        "meta_description": "d",
        "body_markdown": "b",
    },
    "/dashboard/drafts/{draft_id}/restore": {"version": "1"},
}
FILES = {"/dashboard/sites/{site_id}/keywords/upload": {"file": ("k.csv", b"Keyword\nprobe\n", "text/csv")}}
# Pages whose ids are not the signed-in account's own resources, or that have none.
WITHOUT_IDS = {"/dashboard/", "/dashboard/signin", "/dashboard/signout", "/dashboard/sites"}


def dashboard_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the dashboard sub-application, from the orchestrator's route table."""
    from services.orchestrator.app import create_app

    mount = next(r for r in create_app().routes if isinstance(r, Mount) and r.path == "/dashboard")
    return [(m, "/dashboard" + route.path) for route in api_routes(mount.routes) for m in sorted(route.methods)]


ROUTES = dashboard_routes()


def session_cookie(response: httpx.Response) -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith("cl_session="))


def sign_in(stack: Stack, key: str, headers: dict[str, str] | None = None) -> tuple[httpx.Client, str]:
    """A browser-like client signed in with `key`, and its CSRF token."""
    client = httpx.Client(base_url=stack.api_url, timeout=60, headers=headers or {})
    form = client.get("/dashboard/signin")
    token = SIGNIN_TOKEN.search(form.text)
    assert token, form.text
    done = client.post("/dashboard/signin", data={"key": key, "csrf_token": token.group(1), "next": "/dashboard/"})
    assert done.status_code == 303, done.text
    page = client.get("/dashboard/")
    csrf = CSRF_META.search(page.text)
    assert page.status_code == 200 and csrf, page.text
    return client, csrf.group(1)


@pytest.fixture(scope="module")
async def victim(stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Tenant A (`api`) with one resource of each kind a dashboard path can name."""
    site = create_site(api, "dashboard tenant A")
    import_keywords(api, site, keyword_set(1, 2))
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    run = wait_run(api, api.post(f"/sites/{site}/runs").json()["run_id"])
    cluster_id = api.get(f"/sites/{site}/clusters").json()["items"][0]["id"]
    async with db.begin() as s:
        cluster = await s.get(Cluster, cluster_id)
        assert cluster is not None
        idea = Idea(
            site_id=site,
            cluster_id=cluster.id,
            seq=0,
            title="t",
            content_type="guide",
            intent="x",
            primary_keyword="alpha",
            target_words=500,
            brief="b",
        )
        s.add(idea)
        await s.flush()
        task = WriterTask(site_id=site, idea_id=idea.id, title="t")
        s.add(task)
        await s.flush()
        draft = Draft(
            site_id=site,
            task_id=task.id,
            title="A's draft",
            slug="a",
            meta_title="m",
            meta_description="d",
            body_markdown="x",
            body_html="<p>x</p>",
            word_count=1,
            target_words=500,
            quality_score=90,
        )
        s.add(draft)
        await s.flush()
        png = stack.media_dir / "dashboard-tenancy" / f"{uuid.uuid4().hex}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", (2, 2)).save(png)
        prompt = ImagePrompt(
            site_id=site, draft_id=draft.id, position=0, placement="featured", prompt="p", alt_text="a", caption="c"
        )
        s.add(prompt)
        await s.flush()
        image = Image(
            site_id=site,
            prompt_id=prompt.id,
            draft_id=draft.id,
            path=str(png),
            checksum_sha256="0" * 64,
            size_bytes=png.stat().st_size,
            mime="image/png",
            width=2,
            height=2,
        )
        s.add(image)
        await s.flush()
        ids = {"draft_id": str(draft.id), "image_id": str(image.id)}
    return {"site_id": site, "run_id": run["run_id"], "cluster_id": str(cluster_id), "action": "pause", **ids}


def test_every_dashboard_route_is_scoped_to_the_signed_in_account(
    stack: Stack, victim: dict[str, str], tenant: Tenant, other_tenant: httpx.Client
) -> None:
    other_key = str(other_tenant.headers["Authorization"]).removeprefix("Bearer ")
    owner, owner_csrf = sign_in(stack, tenant.key)
    intruder, csrf = sign_in(stack, other_key)
    checked = 0
    try:
        for method, path in ROUTES:
            names = re.findall(r"{(\w+)}", path)
            if not names:
                assert path in WITHOUT_IDS or path.startswith("/dashboard/static"), f"{method} {path}: add it"
                continue
            missing = [n for n in names if n not in victim]
            assert not missing, f"{method} {path}: no resource of tenant A for {missing}; add one to `victim`"
            url = path.format(**{n: victim[n] for n in names})
            extra: dict[str, Any] = {}
            if method == "POST":
                extra = {"data": {"csrf_token": csrf} | FORMS.get(path, {}), "files": FILES.get(path)}
            if path.endswith("/stream"):
                with intruder.stream(method, url) as r:
                    assert r.status_code == 404, f"{method} {url}"
                with owner.stream(method, url) as r:
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            else:
                r = intruder.request(method, url, **extra)
                assert r.status_code == 404, f"{method} {url}: {r.status_code} {r.text[:300]}"
                if method == "GET":  # the owner is answered: the 404 was about whose id it is
                    assert owner.get(url).status_code == 200, url
            checked += 1
        assert owner_csrf != csrf
    finally:
        owner.close()
        intruder.close()
    assert checked >= 15, ROUTES


def test_session_cookie_flags_csrf_and_sign_out(stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    client = httpx.Client(base_url=stack.api_url, timeout=60)
    form = client.get("/dashboard/signin")
    token = SIGNIN_TOKEN.search(form.text)
    assert token
    stale = client.post("/dashboard/signin", data={"key": tenant.key, "csrf_token": "forged"})
    assert stale.status_code == 401 and "stale" in stale.text
    token = SIGNIN_TOKEN.search(stale.text)
    assert token
    operator = client.post("/dashboard/signin", data={"key": OPERATOR_KEY, "csrf_token": token.group(1)})
    assert operator.status_code == 401 and "operator key" in operator.text
    token = SIGNIN_TOKEN.search(operator.text)
    assert token
    done = client.post("/dashboard/signin", data={"key": tenant.key, "csrf_token": token.group(1)})
    cookie = session_cookie(done)
    assert done.status_code == 303
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= flags and "secure" not in flags
    assert "content-security-policy" in done.headers

    csrf = CSRF_META.search(client.get("/dashboard/").text)
    assert csrf
    site = create_site(api)
    assert client.post(f"/dashboard/sites/{site}/run").status_code == 403  # no token
    forged = client.post(f"/dashboard/sites/{site}/run", headers={"X-CSRF-Token": "x" * 43})
    assert forged.status_code == 403
    cross = client.post(
        f"/dashboard/sites/{site}/run", headers={"X-CSRF-Token": csrf.group(1), "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    ok = client.post(f"/dashboard/sites/{site}/run", headers={"X-CSRF-Token": csrf.group(1), "HX-Request": "true"})
    # past the CSRF checks: the site has nothing pending, so the run is refused with the reason, shown
    assert ok.status_code == 409 and "nothing to do" in ok.text, ok.text

    out = client.post("/dashboard/signout", data={"csrf_token": csrf.group(1)})
    assert out.status_code == 303
    again = client.get("/dashboard/", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/dashboard/signin")
    client.close()

    # behind a TLS proxy (uvicorn takes X-Forwarded-Proto from 127.0.0.1) the cookie is Secure
    proxied = httpx.Client(base_url=stack.api_url, timeout=60, headers={"X-Forwarded-Proto": "https"})
    form = proxied.get("/dashboard/signin")
    token = SIGNIN_TOKEN.search(form.text)
    assert token and "secure" in form.headers["set-cookie"].lower()
    # the client's cookie jar keeps a Secure cookie off plain http: send the sign-in form's cookie by hand
    proxied.cookies.clear()
    answer = proxied.post(
        "/dashboard/signin",
        data={"key": tenant.key, "csrf_token": token.group(1)},
        headers={"Cookie": f"cl_signin={token.group(1)}"},
    )
    cookie = session_cookie(answer)
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}
    proxied.close()


def test_a_revoked_key_ends_its_sessions(stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    key = api.post(f"/accounts/{tenant.account_id}/keys", json={"name": "dashboard"}).json()
    client, _ = sign_in(stack, key["key"])
    try:
        assert client.get("/dashboard/").status_code == 200
        assert api.delete(f"/accounts/{tenant.account_id}/keys/{key['id']}").status_code == 200
        assert client.get("/dashboard/", follow_redirects=False).status_code == 303
    finally:
        client.close()


def test_the_push_stream_follows_a_run(stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(2, 3))
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    client, _ = sign_in(stack, tenant.key)
    headings: list[str] = []
    with client.stream("GET", f"/dashboard/sites/{site}/stream", timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        started = False
        deadline = time.monotonic() + 120
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "live" and (found := HEADING.search(line)):
                headings.append(found.group(1).strip())
            elif line == "" and event == "live":
                if not started:  # the first push is the state on connect; now start the run
                    assert api.post(f"/sites/{site}/runs").status_code == 201
                    started = True
                event = ""
            if any("7/7" in h for h in headings) or time.monotonic() > deadline:
                break
    client.close()
    assert headings[0].startswith("Stage 0/7"), headings
    assert any(h.startswith("Stage 1/7") for h in headings), headings
    assert any(h.startswith("Stage 7/7") for h in headings), headings


def test_run_now_without_credits_shows_the_shortfall(stack: Stack, new_tenant: Any) -> None:
    poor = new_tenant(credits="0")
    site = create_site(poor.client)
    import_keywords(poor.client, site, keyword_set(1, 3))
    client, csrf = sign_in(stack, poor.key)
    try:
        page = client.get(f"/dashboard/sites/{site}")
        assert "not enough available" in page.text and 'id="run-now" type="submit">' in page.text
        r = client.post(f"/dashboard/sites/{site}/run", headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
        assert r.status_code == 402 and r.headers["hx-retarget"] == "#alerts"
        assert "Not enough credits" in r.text and 'class="shortfall"' in r.text
        assert poor.client.get(f"/sites/{site}/runs/current").json() is None
    finally:
        client.close()
