"""Automation figures through the API (issue 15): a real run's figures, then runs of every outcome written to the
database with chosen times and credits, so each figure is checked against numbers worked out by hand."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.runs.figures import period_starts
from shared.contracts import utcnow
from shared.db.models import Run, StageRunResult
from tests.helpers import Tenant, configure, create_site, import_keywords, keyword_set, start_run, wait_run

ZONE = "Pacific/Kiritimati"  # UTC+14: "today" there is rarely today in UTC


def figures(api: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = api.get(f"{path}/automation/figures", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def add_run(
    db: async_sessionmaker[AsyncSession], tenant: Tenant, site: str, *, status: str, credits: str,
    started: datetime, trigger: str = "manual", stopped: str | None = None, drafts: int = 0, seconds: float = 0.0,
) -> str:  # fmt: skip
    run_id = f"run_fig_{uuid.uuid4().hex[:10]}"
    async with db.begin() as s:
        s.add(Run(id=run_id, site_id=site, account_id=tenant.account_id, trigger=trigger, status=status,
                  total_credits_used=Decimal(credits), stopped_reason=stopped, started_at=started,
                  completed_at=started + timedelta(minutes=1), options={}, initial_snapshot={}))  # fmt: skip
        await s.flush()
        if drafts:
            s.add(StageRunResult(run_id=run_id, stage=4, status="completed", items_in=drafts, items_processed=drafts,
                                 items_created=drafts, batches_total=1, batches_done=1, seconds=seconds, failures=[],
                                 started_at=started, finished_at=started + timedelta(seconds=seconds)))  # fmt: skip
    return run_id


async def test_figures_of_a_site_and_its_account(
    tenant: Tenant, new_tenant: Any, db: async_sessionmaker[AsyncSession]
) -> None:
    owner = new_tenant()  # an account of its own: the account figures are this test's runs only
    api = owner.client

    # A real run on site A (every stage, the fake provider).
    site_a = create_site(api, "figures A")
    import_keywords(api, site_a, keyword_set(2, 2))
    view = wait_run(api, start_run(api, site_a)["run_id"], timeout=240)
    assert view["status"] == "completed", view
    a = figures(api, f"/sites/{site_a}")
    assert a["site_id"] == site_a and a["account_id"] == owner.account_id and a["timezone"] == "UTC"
    assert a["runs_started"] == {"today": 1, "this_week": 1, "this_month": 1}
    assert (a["runs_finished"], a["runs_succeeded"], a["success_rate"]) == (1, 1, 1.0)
    assert Decimal(a["average_credits_per_run"]) == Decimal(view["total_credits_used"]) > 0
    assert Decimal(a["credits_spent"]) == Decimal(view["total_credits_used"])
    stages = {s["stage"]: s for s in view["stages"]}
    timed = {s["stage"]: s for s in a["average_seconds_per_stage"]}
    assert sorted(timed) == [1, 2, 3, 4, 5, 6]
    for n, s in timed.items():
        assert s["stages_timed"] == 1 and s["average_seconds"] == pytest.approx(stages[n]["seconds"], abs=1e-3)
        assert s["label"] == stages[n]["label"]
    assert a["pieces_generated"] == stages[4]["items_created"] > 0
    assert Decimal(a["credits_spent_by_rules"]) == 0  # no rule has run

    # Site B, in a time zone far from UTC: runs of every outcome, one of them started by a rule, one long ago.
    site_b = create_site(api, "figures B")
    configure(api, site_b, timezone=ZONE)
    now = utcnow()
    recent = now - timedelta(minutes=2)
    await add_run(db, owner, site_b, status="failed", credits="2", started=recent, stopped="failed")
    await add_run(db, owner, site_b, status="cancelled", credits="1", started=recent, stopped="cancelled")
    await add_run(db, owner, site_b, status="completed", credits="3", started=recent, stopped="budget")
    await add_run(db, owner, site_b, status="completed", credits="5", started=recent, trigger="rule", drafts=3,
                  seconds=4.0)  # fmt: skip
    await add_run(db, owner, site_b, status="completed", credits="100", started=now - timedelta(days=40), drafts=7,
                  seconds=10.0)  # fmt: skip
    await add_run(db, owner, site_b, status="running", credits="50", started=recent)  # counted, not averaged

    b = figures(api, f"/sites/{site_b}")
    assert b["timezone"] == ZONE
    today, week, month = period_starts(datetime.fromisoformat(b["as_of"]), ZoneInfo(ZONE))
    local = ZoneInfo(ZONE)
    assert today == datetime.fromisoformat(b["as_of"]).astimezone(local).replace(hour=0, minute=0, second=0,
                                                                                  microsecond=0)  # fmt: skip
    assert today.weekday() - week.weekday() == (today.date() - week.date()).days and week.weekday() == 0
    assert month.day == 1 and (month.year, month.month) == (today.year, today.month)
    starts = [recent] * 5 + [now - timedelta(days=40)]
    assert b["runs_started"] == {
        "today": sum(t >= today for t in starts),
        "this_week": sum(t >= week for t in starts),
        "this_month": sum(t >= month for t in starts),
    }
    assert b["window_days"] == 30
    assert (b["runs_finished"], b["runs_succeeded"], b["success_rate"]) == (4, 1, 0.25)
    assert Decimal(b["average_credits_per_run"]) == Decimal("2.75")  # (2 + 1 + 3 + 5) / 4; the active run waits
    assert Decimal(b["credits_spent"]) == Decimal(61)
    assert Decimal(b["credits_spent_by_rules"]) == Decimal(5)
    assert b["pieces_generated"] == 3
    assert b["average_seconds_per_stage"] == [{"stage": 4, "label": "tasks → drafts", "stages_timed": 1,
                                               "average_seconds": 4.0}]  # fmt: skip

    # A longer window takes in the old run.
    b60 = figures(api, f"/sites/{site_b}", days=60)
    assert (b60["runs_finished"], b60["pieces_generated"], Decimal(b60["credits_spent"])) == (5, 10, Decimal(161))
    assert b60["average_seconds_per_stage"][0]["average_seconds"] == 7.0
    assert b60["runs_started"] == b["runs_started"]  # calendar periods do not depend on the window

    # The account: both sites, calendar periods in UTC.
    acct = figures(api, f"/accounts/{owner.account_id}")
    assert acct["site_id"] is None and acct["timezone"] == "UTC"
    assert acct["runs_finished"] == 5 and acct["runs_succeeded"] == 2
    assert Decimal(acct["credits_spent"]) == Decimal(61) + Decimal(view["total_credits_used"])
    assert Decimal(acct["credits_spent_by_rules"]) == 5
    assert acct["pieces_generated"] == 3 + stages[4]["items_created"]

    # Another account sees none of it; bad windows are refused naming the field.
    for path in (f"/sites/{site_b}", f"/accounts/{owner.account_id}"):
        assert tenant.client.get(f"{path}/automation/figures").status_code == 404
    for days in ("0", "367", "x"):
        r = api.get(f"/sites/{site_b}/automation/figures", params={"days": days})
        assert r.status_code == 422 and "days" in r.text, r.text
