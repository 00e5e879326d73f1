"""Credits against the real stack: refusals with numbers, charge-once, no overdraft under concurrency,
caps and budget shares, replenishment once per period, and the ledger always equal to the balance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from devstack.stack import Stack
from services.orchestrator.accounts import ledger
from services.orchestrator.accounts.service import AccountService
from services.orchestrator.runs.service import held_by_active_runs
from shared.contracts import StageResult
from shared.db.models import Account, CreditLedger, Run
from shared.topics import STAGE_RESULTS
from tests.helpers import (
    CLUSTERING_ONLY,
    Tenant,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    publish,
    read_topic,
    wait_run,
)


def open_account(new_tenant: Callable[..., Tenant], credits: str, monthly: str = "0") -> tuple[httpx.Client, str]:
    """A fresh account with `credits` and its client: every test here counts one account's money."""
    tenant = new_tenant(credits, monthly)
    return tenant.client, tenant.account_id


def site_of(api: httpx.Client) -> str:
    return create_site(api, f"s-{uuid.uuid4().hex[:6]}")


async def assert_ledger_is_balance(db: async_sessionmaker[AsyncSession], account: str) -> Decimal:
    """Every balance change went through the ledger: its sum equals the balance, which is never negative."""
    async with db() as s:
        total = await s.scalar(
            select(func.coalesce(func.sum(CreditLedger.amount), 0)).where(CreditLedger.account_id == account)
        )
        balance = (await s.get(Account, account)).credit_balance  # type: ignore[union-attr]
        lowest = await s.scalar(select(func.min(CreditLedger.balance_after)).where(CreditLedger.account_id == account))
    assert Decimal(total) == balance and balance >= 0 and (lowest is None or lowest >= 0)
    return balance


async def test_insufficient_balance_is_refused_with_numbers_and_no_run(
    new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    api, account = open_account(new_tenant, "2")
    site = site_of(api)
    import_keywords(api, site, keyword_set(4, 6))  # 24 keywords: far more than 2 credits of work
    estimate = api.get(f"/sites/{site}/estimate").json()
    assert Decimal(estimate["required"]) == (Decimal(estimate["total"]) * Decimal("1.2")).quantize(Decimal("0.0001"))
    assert estimate["sufficient"] is False
    r = api.post(f"/sites/{site}/runs")
    assert r.status_code == 402
    body = r.json()
    assert body["estimate"] == estimate["total"] and Decimal(body["available"]) == 2
    assert Decimal(body["shortfall"]) == Decimal(body["required"]) - 2 > 0
    assert "not enough credits" in body["detail"]
    async with db() as s:
        assert await s.scalar(select(func.count()).select_from(Run).where(Run.site_id == site)) == 0
    assert await assert_ledger_is_balance(db, account) == 2


async def test_a_replayed_stage_result_is_charged_once(
    stack: Stack, new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    api, account = open_account(new_tenant, "1000")
    site = site_of(api)
    import_keywords(api, site, keyword_set(2, 5))
    configure(api, site, stage_enabled=CLUSTERING_ONLY)
    run = wait_run(api, api.post(f"/sites/{site}/runs").json()["run_id"])
    used = Decimal(run["total_credits_used"])
    assert used == 2  # 10 keywords at 1 credit per 5
    records = await read_topic(stack.kafka_bootstrap, STAGE_RESULTS, lambda r: run["run_id"].encode() in r.value)
    original = StageResult.model_validate_json(records[0].value)
    # same command id, new message id (a worker that re-sent it), and the very same message again
    replay = original.model_copy(update={"message_id": uuid.uuid4().hex})
    for msg in (replay, original, replay):
        await publish(stack.kafka_bootstrap, STAGE_RESULTS, msg.model_dump_json().encode(), key=site.encode())

    async def late_logged() -> bool:
        log = api.get(f"/runs/{run['run_id']}/activity").json()
        return any("arrived while it was done" in line["message"] for line in log)

    await eventually(late_logged, timeout=30)
    async with db() as s:
        debits = await s.scalar(
            select(func.count())
            .select_from(CreditLedger)
            .where(CreditLedger.idempotency_key == f"debit:{original.command_id}")
        )
    assert debits == 1
    assert Decimal(api.get(f"/runs/{run['run_id']}").json()["total_credits_used"]) == used
    assert await assert_ledger_is_balance(db, account) == 1000 - used


async def test_concurrent_starts_across_sites_never_overdraw(
    new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    # Each site: 10 keywords, clustering only → estimate 2, needs 2.4 to start. 12 credits cover 5 of 20.
    api, account = open_account(new_tenant, "12")
    sites = [site_of(api) for _ in range(20)]
    for i, site in enumerate(sites):
        import_keywords(api, site, [{"keyword": f"{k['keyword']} site{i}"} for k in keyword_set(2, 5)])
        configure(api, site, stage_enabled=CLUSTERING_ONLY)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda s: api.post(f"/sites/{s}/runs"), sites))
    started = [r.json()["run_id"] for r in responses if r.status_code == 201]
    refused = [r.json() for r in responses if r.status_code == 402]
    assert len(started) + len(refused) == 20
    assert len(started) == 5, [r.status_code for r in responses]
    assert all("not enough credits" in r["detail"] and Decimal(r["shortfall"]) > 0 for r in refused)
    for run_id in started:
        assert wait_run(api, run_id)["status"] == "completed"
    balance = await assert_ledger_is_balance(db, account)
    assert balance == 12 - 2 * len(started)
    summary = api.get(f"/accounts/{account}").json()  # finished runs hold nothing back any more
    assert Decimal(summary["reserved"]) == 0 and Decimal(summary["available"]) == balance


async def test_credit_cap_stops_the_run_at_a_batch_boundary(
    new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    api, account = open_account(new_tenant, "1000")
    site = site_of(api)
    import_keywords(api, site, keyword_set(6, 5))  # 30 keywords = 6 batches of 5 at 1 credit each
    configure(
        api,
        site,
        batch_sizes={"1": 5},
        limits={"max_credits_per_run": "3"},
        budget_shares={"clustering": 100, "ideas": 0, "content": 0, "image_prompts": 0, "images": 0},
    )
    view = wait_run(api, api.post(f"/sites/{site}/runs").json()["run_id"])
    s1 = view["stages"][0]
    assert view["status"] == "completed" and view["stopped_reason"] == "budget"
    assert Decimal(view["total_credits_used"]) == 3 and s1["items_processed"] == 15
    assert s1["stopped_reason"] == "budget" and s1["partial"] and s1["status"] == "stopped"
    assert len(view["stages"]) == 1  # nothing after the stop
    log = api.get(f"/runs/{view['run_id']}/activity").json()
    assert any("credit cap 3" in line["message"] for line in log)
    assert await assert_ledger_is_balance(db, account) == 997


async def test_exhausted_budget_share_stops_that_stage_and_later_stages_run(
    new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    api, account = open_account(new_tenant, "1000")
    site = site_of(api)
    import_keywords(api, site, keyword_set(6, 5))  # 30 keywords
    # cap 20 → clustering share 15% = 3 credits = 3 batches of 5 keywords; ideas 10% = 2 credits = 1 cluster
    configure(
        api,
        site,
        batch_sizes={"1": 5},
        limits={"max_credits_per_run": "20"},
        stage_enabled={"4": False, "5": False, "6": False},
    )
    view = wait_run(api, api.post(f"/sites/{site}/runs").json()["run_id"])
    stages = {s["stage"]: s for s in view["stages"]}
    assert view["status"] == "completed" and view["stopped_reason"] is None
    assert stages[1]["stopped_reason"] == "budget" and stages[1]["items_processed"] == 15
    assert Decimal(stages[1]["credits"]) == 3
    assert stages[2]["items_in"] > 0 and stages[2]["items_processed"] >= 1  # ran on the clusters that exist
    assert Decimal(stages[2]["credits"]) <= 2 and stages[2]["stopped_reason"] in ("budget", None)
    assert stages[3]["items_processed"] == stages[2]["items_created"]
    assert api.get(f"/sites/{site}/pipeline").json()["pending"][0]["pending"] == 15  # left for the next run
    await assert_ledger_is_balance(db, account)


async def test_monthly_replenishment_is_granted_once_per_period(
    stack: Stack, new_tenant: Callable[..., Tenant], operator: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    api, account = open_account(new_tenant, "0", monthly="500")

    async def granted_this_month() -> Decimal | None:
        balance = Decimal(api.get(f"/accounts/{account}").json()["balance"])
        return balance if balance else None

    assert await eventually(granted_this_month, timeout=30) == 500  # the orchestrator's own ticker granted it
    with ThreadPoolExecutor(5) as pool:
        again = list(pool.map(lambda _: operator.post(f"/accounts/{account}/replenish").json(), range(5)))
    assert api.post(f"/accounts/{account}/replenish").status_code == 403  # the operator's to do
    assert [r["granted"] for r in again] == [False] * 5

    # Next month, from two more orchestrator instances at once (a restart or a second replica): once.
    engines = [create_async_engine(stack.database_url) for _ in range(2)]
    try:
        services = [
            AccountService(async_sessionmaker(e, expire_on_commit=False), held_by_active_runs) for e in engines
        ]
        next_month = datetime(2099, 1, 15, tzinfo=UTC)
        results = await asyncio.gather(*(svc.replenish(account, next_month) for svc in services for _ in range(3)))
    finally:
        for e in engines:
            await e.dispose()
    assert sorted(results) == [False] * 5 + [True]
    ledger = api.get(f"/accounts/{account}/ledger").json()
    grants = sorted(e["key"].rsplit(":", 1)[1] for e in ledger if e["kind"] == "grant")
    assert grants == sorted(["2099-01", datetime.now(UTC).strftime("%Y-%m")])
    assert await assert_ledger_is_balance(db, account) == 1000


async def test_a_groups_debits_charge_as_one_after_another_would(
    new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    """`debit_many` (a group of results) against PostgreSQL: charged in order until the balance is spent, the
    rest recorded as uncollected; a key used before, or twice in the group, is charged once."""
    _, account = open_account(new_tenant, "10")
    run_id = f"run-group-{uuid.uuid4().hex[:6]}"
    async with db.begin() as s:
        assert await ledger.debit(s, account, run_id, f"debit:{run_id}:0", Decimal(1), {"stage": 2}) == 1
    entries = [
        (f"debit:{run_id}:0", Decimal(2), {"stage": 2}),  # charged before this group
        (f"debit:{run_id}:1", Decimal(4), {"stage": 2}),
        (f"debit:{run_id}:2", Decimal(4), {"stage": 2}),
        (f"debit:{run_id}:1", Decimal(4), {"stage": 2}),  # the same command's result twice in the group
        (f"debit:{run_id}:3", Decimal(4), {"stage": 4}),  # 1 left: 3 uncollected
        (f"debit:{run_id}:4", Decimal(4), {"stage": 4}),  # nothing left
    ]
    async with db.begin() as s:
        charged = await ledger.debit_many(s, account, run_id, entries)
    assert charged == [None, 4, 4, None, 1, 0]
    async with db() as s:
        rows = (
            await s.scalars(select(CreditLedger).where(CreditLedger.run_id == run_id).order_by(CreditLedger.id))
        ).all()
    assert [(r.idempotency_key[-1], r.amount, r.balance_after) for r in rows] == [
        ("0", -1, 9), ("1", -4, 5), ("2", -4, 1), ("3", -1, 0), ("4", 0, 0)
    ]  # fmt: skip
    assert [Decimal(r.detail["uncollected"]) for r in rows[3:]] == [3, 4]
    assert await assert_ledger_is_balance(db, account) == 0
