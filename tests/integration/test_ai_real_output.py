"""Real model output on the real stack (issue 11): a reply cut off by the token limit and a refusal each fail
only their own item, the run goes on, and the named reason shows in the stage's failures and in the run's
activity; the tokens of the failed tries are recorded in ai_calls with their outcome and finish reason."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import AiCall, Cluster, Idea
from tests.helpers import configure, create_site, import_keywords, stage, start_run, wait_run

CLUSTER_AND_IDEAS = {"3": False, "4": False, "5": False, "6": False}


@pytest.fixture
def faulty(fake: httpx.Client) -> Iterator[httpx.Client]:
    # Only the ideas request of one cluster each: the keyword marks the cluster, "Propose" the ideas prompt.
    rules = [
        {"kind": "cut_off", "endpoint": "chat", "if_prompt_matches": "zqxcut.*Propose"},
        {"kind": "refusal_text", "endpoint": "chat", "if_prompt_matches": "zqxrefuse.*Propose"},
    ]
    assert fake.post("/config", json={"faults": rules}).status_code == 200
    yield fake
    assert fake.post("/config", json={"faults": []}).status_code == 200


async def test_cut_off_and_refusal_fail_only_their_items_with_named_reasons(
    api: httpx.Client, faulty: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    keywords = ["dog training puppy", "dog training crate", "zqxcut plants low light", "zqxcut plants watering",
                "zqxrefuse coffee grinder burr", "zqxrefuse coffee grinder manual"]  # fmt: skip
    import_keywords(api, site, [{"keyword": k} for k in keywords])
    configure(api, site, stage_enabled=CLUSTER_AND_IDEAS, batch_sizes={"2": 1})
    view = wait_run(api, start_run(api, site)["run_id"])
    s1, s2 = stage(view, 1), stage(view, 2)
    assert view["status"] == "completed" and s1["items_failed"] == 0 and s1["items_created"] == 3
    assert s2["items_in"] == 3 and s2["items_processed"] == 1 and s2["items_failed"] == 2 and s2["partial"]
    async with db() as s:
        names = dict((await s.execute(select(Cluster.id, Cluster.name).where(Cluster.site_id == site))).all())
        ideas = (await s.scalars(select(Idea.cluster_id).where(Idea.site_id == site))).all()
        calls = (
            await s.scalars(select(AiCall).where(AiCall.run_id == view["run_id"], AiCall.purpose == "ideas"))
        ).all()
    reasons = {f["item_id"]: f["reason"] for f in s2["failures"]}
    cut = next(r for r in reasons.values() if "cut off" in r)
    refused = next(r for r in reasons.values() if "refused" in r)
    assert cut.startswith("ideas: reply cut off by the token limit even at max_tokens=")
    assert refused.startswith("ideas: the model refused [chat model gpt-4o-mini at 127.0.0.1:")
    assert len(ideas) == 1 and ideas[0] not in reasons and set(reasons) | set(ideas) == set(names)

    log = [line["message"] for line in api.get(f"/runs/{view['run_id']}/activity", params={"stage": 2}).json()]
    assert any("item(s) failed: ideas: reply cut off by the token limit" in m for m in log), log
    assert any("item(s) failed: ideas: the model refused" in m for m in log), log

    outcomes = sorted((c.outcome, c.finish_reason, c.ok) for c in calls)
    assert outcomes == [
        ("cut_off", "length", False),
        ("cut_off", "length", False),
        ("ok", "stop", True),
        ("refusal", "stop", False),
    ]
    cut_calls = [c for c in calls if c.outcome == "cut_off"]
    assert all(c.completion_tokens > 0 and c.max_tokens for c in cut_calls)  # failed tries' tokens recorded
    assert cut_calls[0].max_tokens * 2 in {c.max_tokens for c in cut_calls}  # the re-ask had twice the budget
