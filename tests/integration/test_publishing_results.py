"""The orchestrator's consumer of the publisher's reports, over the real broker: a result delivered twice is
recorded once, a late failure of an earlier command does not undo anything, a status change reaches the draft,
and an unusable record is dead-lettered with its reason while the consumer moves on."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import PublicationState, PublicationStatusChanged, PublishResult, RemoteStatus
from shared.db.models import ActivityLog, ScheduledPublication
from shared.topics import DLQ_REASON_HEADER, PUBLICATION_STATUS, PUBLISH_RESULTS, PUBLISH_RESULTS_DLQ
from tests.helpers import Tenant, create_site, eventually, publish, read_topic
from tests.integration.publishing_support import seed_drafts

UNRESOLVABLE = {"base_url": "http://127.0.0.1:9", "username": "nobody", "app_password_ref": "env:CONTENTLINE_NOPE"}


async def test_results_are_recorded_once_late_failures_ignored_and_garbage_dead_lettered(
    stack: Stack, api: httpx.Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    assert api.put(f"/sites/{site}/wordpress", json=UNRESOLVABLE).status_code == 200
    run_id = f"run-results-{uuid.uuid4().hex[:6]}"
    (draft,) = await seed_drafts(db, site, 1, run_id=run_id)
    r = api.post(f"/drafts/{draft}/review", json={"decision": "approved", "note": "ok"})
    assert r.json()["publishing"]["state"] == "scheduled", r.text
    key = site.encode()

    def result(command_id: str, state: PublicationState, **kw: object) -> PublishResult:
        return PublishResult.model_validate(
            {"command_id": command_id, "account_id": tenant.account_id, "site_id": site, "draft_id": draft,
             "state": state, **kw}
        )  # fmt: skip

    # A failure for a command the draft does not wait on (it is scheduled, not with the publisher): ignored.
    late = result("an-earlier-command", PublicationState.FAILED, reason="site was down")
    await publish(stack.kafka_bootstrap, PUBLISH_RESULTS, late.model_dump_json().encode(), key=key)

    # Handed over (as the ticker would): the draft now waits on command C.
    command_id = f"cmd-{uuid.uuid4().hex}"
    async with db.begin() as s:
        await s.execute(
            update(ScheduledPublication)
            .where(ScheduledPublication.draft_id == draft)
            .values(state="publishing", command_id=command_id, attempts=1)
        )
    garbage = b'{"not": "a publish result", "marker": "' + uuid.uuid4().hex.encode() + b'"}'
    await publish(stack.kafka_bootstrap, PUBLISH_RESULTS, garbage, key=key)
    done = result(command_id, PublicationState.PUBLISHED, remote_post_id=42, url="http://wp.example/p/42",
                  remote_status=RemoteStatus.PUBLISH)  # fmt: skip
    for _ in range(2):  # delivered twice
        await publish(stack.kafka_bootstrap, PUBLISH_RESULTS, done.model_dump_json().encode(), key=key)

    def published() -> dict[str, object] | None:
        p = dict(api.get(f"/drafts/{draft}").json()["publishing"])
        return p if p["state"] == "published" else None

    view = await eventually(published, timeout=60)
    assert (view["remote_post_id"], view["url"], view["remote_status"]) == (42, "http://wp.example/p/42", "publish")

    moved = PublicationStatusChanged(
        account_id=tenant.account_id, site_id=site, draft_id=draft, remote_post_id=42,
        previous_status=RemoteStatus.PUBLISH, remote_status=RemoteStatus.TRASH, previous_url=done.url, url=done.url,
    )  # fmt: skip
    for _ in range(2):
        await publish(stack.kafka_bootstrap, PUBLICATION_STATUS, moved.model_dump_json().encode(), key=key)
    assert await eventually(lambda: api.get(f"/drafts/{draft}").json()["publishing"]["remote_status"] == "trash")

    async with db() as s:  # the draft's run id is made up (no run row): its activity lines straight from the table
        lines = list((await s.scalars(select(ActivityLog.message).where(ActivityLog.run_id == run_id))).all())
    assert sum(m.startswith(f"draft {draft} published on WordPress as post 42") for m in lines) == 1
    assert sum("is now trash (was publish)" in m for m in lines) == 1
    assert any("an earlier publish command's failure arrived late and is ignored" in m for m in lines)

    parked = await eventually(lambda: read_topic(stack.kafka_bootstrap, PUBLISH_RESULTS_DLQ,
                                                 lambda rec: rec.value == garbage))  # fmt: skip
    reason = dict(parked[0].headers)[DLQ_REASON_HEADER].decode()
    assert len(parked) == 1 and "invalid message" in reason and "command_id" in reason
