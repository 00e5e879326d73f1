"""Per-site voice through the real API and workers: options round-trip, bad overrides are 422, and a site's
brand notes and template overrides reach the provider (seen by the fake's `malformed_if_prompt_contains`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import AiCall
from tests.helpers import (
    CLUSTERING_ONLY,
    configure,
    create_site,
    import_keywords,
    keyword_set,
    start_run,
    wait_run,
)

CLUSTER_AND_IDEAS = {"3": False, "4": False, "5": False, "6": False}

IDEAS_OVERRIDE = (
    "Cluster: $cluster_name ($cluster_intent)\nKeywords: $keywords\nNumber of items: $ideas_per_cluster\n"
    "Target words: $target_words\nPropose $ideas_per_cluster idea(s) in $language for our readers."
)


def voice(**extra: object) -> dict[str, object]:
    return {
        "language": "English",
        "tone": "calm and precise",
        "brand_notes": "Bean & Co. sells grinders; mention freshness.",
        "banned_words": ["cheap", "guru"],
        "prompt_templates": {"ideas.user": IDEAS_OVERRIDE},
    } | extra


@pytest.fixture
def provider(fake: httpx.Client) -> Iterator[httpx.Client]:
    yield fake
    r = fake.post("/config", json={"malformed_if_prompt_contains": None})
    assert r.status_code == 200, r.text


async def calls_of(db: async_sessionmaker[AsyncSession], run_id: str) -> list[AiCall]:
    async with db() as s:
        return list((await s.scalars(select(AiCall).where(AiCall.run_id == run_id, AiCall.kind == "chat"))).all())


def test_voice_options_round_trip_and_bad_overrides_are_422(api: httpx.Client) -> None:
    site = create_site(api)
    body = configure(api, site, options=voice(), stage_enabled=CLUSTER_AND_IDEAS)
    stored = api.get(f"/sites/{site}/config").json()["config"]["options"]
    assert body["config"]["options"] == stored
    assert stored["brand_notes"] == "Bean & Co. sells grinders; mention freshness."
    assert stored["banned_words"] == ["cheap", "guru"]
    assert stored["prompt_templates"] == {"ideas.user": IDEAS_OVERRIDE}
    assert stored["tone"] == "calm and precise" and stored["target_words"] == 900  # untouched defaults kept

    bad = voice(prompt_templates={"ideas.user": "Keywords: $keywords\nTarget words: $target_words"})
    r = api.patch(f"/sites/{site}/config", json={"options": bad})
    assert r.status_code == 422, r.text
    assert "'ideas.user'" in r.text and "$ideas_per_cluster" in r.text
    r = api.patch(f"/sites/{site}/config", json={"options": voice(prompt_templates={"closing.user": "x"})})
    assert r.status_code == 422 and "unknown prompt template 'closing.user'" in r.text
    r = api.patch(f"/sites/{site}/config", json={"options": voice(banned_words=["x" * 51])})
    assert r.status_code == 422
    assert api.get(f"/sites/{site}/config").json()["config"]["options"] == stored  # nothing changed

    import_keywords(api, site, keyword_set(2, 4))
    view = wait_run(api, start_run(api, site)["run_id"])
    assert view["status"] == "completed", view


async def test_template_override_reaches_the_provider(
    api: httpx.Client, provider: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    marker = f"OVERRIDE-{uuid.uuid4().hex[:10]}"
    site = create_site(api)
    override = IDEAS_OVERRIDE + f"\nReference: {marker}"
    configure(api, site, options=voice(prompt_templates={"ideas.user": override}), stage_enabled=CLUSTER_AND_IDEAS)
    import_keywords(api, site, keyword_set(1, 4))
    assert provider.post("/config", json={"malformed_if_prompt_contains": marker}).status_code == 200
    run_id = start_run(api, site)["run_id"]
    wait_run(api, run_id)
    calls = await calls_of(db, run_id)
    labels = [c for c in calls if c.purpose == "cluster-label"]
    ideas = [c for c in calls if c.purpose == "ideas"]
    assert labels and all(c.ok for c in labels)  # stage 1 uses the default user template: unaffected
    assert ideas and not any(c.ok for c in ideas)  # every ideas prompt was the site's override
    assert all("invalid structured output" in (c.error or "") for c in ideas)


async def test_brand_notes_reach_every_system_prompt(
    api: httpx.Client, provider: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    marker = f"BRAND-{uuid.uuid4().hex[:10]}"
    site = create_site(api)
    configure(api, site, options=voice(brand_notes=f"Sign as {marker}."), stage_enabled=CLUSTERING_ONLY)
    import_keywords(api, site, keyword_set(1, 4))
    assert provider.post("/config", json={"malformed_if_prompt_contains": marker}).status_code == 200
    run_id = start_run(api, site)["run_id"]
    wait_run(api, run_id)
    labels = [c for c in await calls_of(db, run_id) if c.purpose == "cluster-label"]
    assert labels and not any(c.ok for c in labels)
