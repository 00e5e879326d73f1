"""Hostile keywords through the real stack: the fake model echoes keywords into titles, headings and prose,
so `<script>` and `<img onerror>` reach the writer; nothing executable may come out in the stored draft,
the API's draft view or the ArticlePublished event read back from Kafka.

HTML fields (`body_html`) are checked as HTML; `body_markdown` is checked as rendered by a Markdown renderer
that passes raw HTML through (what a naive CMS connector would do); plain-text fields (title, meta, alt
text, captions) must hold the text as written, not HTML-escaped (escaping is the job of whoever renders them).
"""

from __future__ import annotations

from typing import Any

import httpx
import markdown
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import ArticlePublished
from shared.db.models import Draft
from shared.topics import ARTICLES_PUBLISHED
from tests.helpers import configure, create_site, eventually, import_keywords, read_topic, start_run, wait_run
from tests.markup import executable_markup

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
KEYWORDS = [IMG, SCRIPT, f"best {SCRIPT} tips", f"{IMG} review", "<svg onload=alert(1)> guide"]
# How the keywords look once they are text inside HTML.
ESCAPED = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;")


def assert_inert(where: str, body_html: str, body_markdown: str) -> None:
    assert executable_markup(body_html) == [], (where, "body_html", body_html)
    rendered = markdown.markdown(body_markdown, extensions=["extra"])
    assert executable_markup(rendered) == [], (where, "body_markdown", rendered)


def assert_plain(where: str, *texts: str) -> None:
    for text in texts:
        assert "&lt;" not in text and "&amp;" not in text, (where, "plain text was HTML-escaped", text)


async def test_hostile_keywords_yield_no_executable_markup(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api, "xss")
    summary = import_keywords(api, site, [{"keyword": k, "volume": 100} for k in KEYWORDS])
    assert summary["imported"] == len(KEYWORDS), summary
    configure(api, site, options={"target_words": 300, "ideas_per_cluster": 1})
    view = wait_run(api, start_run(api, site)["run_id"], timeout=300)
    assert view["status"] == "completed" and view["current_stage"] == 7, view

    # 1. The stored drafts.
    async with db() as s:
        drafts = (await s.scalars(select(Draft).where(Draft.site_id == site).order_by(Draft.id))).all()
    assert drafts
    for d in drafts:
        assert_inert(f"db draft {d.id}", d.body_html, d.body_markdown)
        assert_plain(f"db draft {d.id}", d.title, d.meta_title, d.meta_description)
    # The test means something only if the hostile text reached the HTML (as text).
    carrying = [d for d in drafts if any(e in d.body_html for e in ESCAPED)]
    assert carrying, [d.body_html[:300] for d in drafts]
    assert any("<" in d.title for d in drafts)  # titles keep the keyword as written

    # 2. The API's draft view, for every draft at the review gate.
    queue = api.get(f"/sites/{site}/review-queue").json()
    assert {item["draft_id"] for item in queue} == {d.id for d in drafts}
    views: dict[int, dict[str, Any]] = {}
    for d in drafts:
        r = api.get(f"/drafts/{d.id}")
        assert r.status_code == 200, r.text
        views[d.id] = detail = r.json()
        assert detail["body_html"] == d.body_html
        assert_inert(f"api draft {d.id}", detail["body_html"], detail["body_markdown"])
        assert_plain(f"api draft {d.id}", detail["title"], detail["meta_title"], detail["meta_description"])
        assert_plain(f"api draft {d.id} images", *(t for i in detail["images"] for t in (i["alt_text"], i["caption"])))

    # 3. The ArticlePublished event, read back from the broker after approve + publish.
    chosen = carrying[0].id
    r = api.post(f"/drafts/{chosen}/review", json={"decision": "approved", "note": "xss check"})
    assert r.status_code == 200, r.text
    r = api.post(f"/drafts/{chosen}/publish")
    assert r.status_code == 200 and r.json()["decision"] == "published", r.text
    records = await eventually(
        lambda: read_topic(stack.kafka_bootstrap, ARTICLES_PUBLISHED, lambda rec: rec.key == site.encode())
    )
    events = [ArticlePublished.model_validate_json(rec.value) for rec in records]
    assert [e.draft_id for e in events] == [chosen]
    article = events[0]
    assert article.body_html == views[chosen]["body_html"] and any(e in article.body_html for e in ESCAPED)
    assert_inert("ArticlePublished", article.body_html, article.body_markdown)
    assert_plain("ArticlePublished", article.title, article.meta_title, article.meta_description)
    assert_plain("ArticlePublished images", *(t for i in article.images for t in (i.alt_text, i.caption)))
