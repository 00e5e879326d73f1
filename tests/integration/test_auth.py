"""API keys and the operator key against the live API: shown once, stored as a hash, listed, revoked;
last use recorded; operator-only grants that a replayed Idempotency-Key applies once."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import ApiKey, CreditLedger
from tests.helpers import Tenant


async def test_keys_are_shown_once_stored_hashed_listed_and_revocable(
    stack: Stack, new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    owner = new_tenant("0")
    api = owner.client
    created = api.post(f"/accounts/{owner.account_id}/keys", json={"name": "ci"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith(f"cl_{created.json()['id']}_") and len(key) > 50
    listed = api.get(f"/accounts/{owner.account_id}/keys").json()
    assert {k["name"] for k in listed} == {"initial", "ci"}
    assert all("key" not in k and k["prefix"].startswith("cl_") for k in listed)  # the secret is never listed
    async with db() as s:
        row = await s.get(ApiKey, created.json()["id"])
    assert row is not None and row.key_sha256 == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(row.__dict__)

    second = httpx.Client(base_url=f"{stack.api_url}/api/v1", headers={"Authorization": f"Bearer {key}"})
    with second:
        assert second.get("/me").json() == {"kind": "account", "account_id": owner.account_id,
                                             "key_id": created.json()["id"]}
        used = {k["id"]: k["last_used_at"] for k in api.get(f"/accounts/{owner.account_id}/keys").json()}
        assert used[created.json()["id"]] is not None
        revoked = api.delete(f"/accounts/{owner.account_id}/keys/{created.json()['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        refused = second.get("/me")
        assert refused.status_code == 401 and "invalid_token" in refused.headers["www-authenticate"]
    assert api.get("/me").status_code == 200  # the other key still works


def test_a_key_of_the_right_shape_but_wrong_secret_is_refused(stack: Stack, tenant: Tenant) -> None:
    forged = tenant.key[:-4] + ("AAAA" if not tenant.key.endswith("AAAA") else "BBBB")
    r = httpx.get(f"{stack.api_url}/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    r = httpx.get(f"{stack.api_url}/api/v1/me", headers={"Authorization": f"Basic {tenant.key}"})
    assert r.status_code == 401  # only bearer tokens


def test_operator_creates_accounts_and_an_account_key_cannot(operator: httpx.Client, api: httpx.Client) -> None:
    assert api.post("/accounts", json={"name": "self-made", "initial_credits": "100000000"}).status_code == 403
    made = operator.post("/accounts", json={"name": "Acme", "initial_credits": "50"})
    assert made.status_code == 201
    body = made.json()
    assert body["account"]["balance"] == "50.0000" and body["api_key"]["key"].startswith("cl_")
    assert operator.get(f"/accounts/{body['account']['account_id']}").json()["balance"] == "50.0000"
    assert operator.get("/me").json()["kind"] == "operator"


async def test_operator_grants_apply_once_per_idempotency_key(
    operator: httpx.Client, new_tenant: Callable[..., Tenant], db: async_sessionmaker[AsyncSession]
) -> None:
    owner = new_tenant("10")
    url = f"/accounts/{owner.account_id}/credits"
    key = {"Idempotency-Key": f"grant-{uuid.uuid4().hex}"}
    body = {"amount": "25.5", "reason": "support goodwill"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: operator.post(url, json=body, headers=key), range(4)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.text for a in answers}) == 1  # the same answer, every time
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 3
    entry = answers[0].json()["entry"]
    assert entry["kind"] == "adjustment" and Decimal(entry["amount"]) == Decimal("25.5")
    assert Decimal(owner.client.get(f"/accounts/{owner.account_id}").json()["balance"]) == Decimal("35.5")

    reused = operator.post(url, json={"amount": "99", "reason": "other"}, headers=key)
    assert reused.status_code == 409
    assert operator.post(url, json=body).status_code == 422  # the header is required
    too_much = operator.post(url, json={"amount": "-1000", "reason": "x"}, headers={"Idempotency-Key": "neg-1"})
    assert too_much.status_code == 409 and "below zero" in too_much.json()["detail"]
    taken = operator.post(url, json={"amount": "-5.5", "reason": "correction"}, headers={"Idempotency-Key": "neg-2"})
    assert taken.status_code == 201
    assert Decimal(owner.client.get(f"/accounts/{owner.account_id}").json()["balance"]) == Decimal("30")
    assert owner.client.post(url, json=body, headers=key).status_code == 403  # never the account itself
    async with db() as s:
        kinds = (await s.scalars(select(CreditLedger.kind).where(CreditLedger.account_id == owner.account_id))).all()
    assert sorted(kinds) == ["adjustment", "adjustment", "grant"]


def test_global_budget_shares_are_the_operators(operator: httpx.Client, api: httpx.Client) -> None:
    shares = api.get("/budget-shares").json()
    assert sum(shares.values()) == 100
    assert api.put("/budget-shares", json={"shares": shares}).status_code == 403
    changed = dict(shares, clustering=shares["clustering"] + 5, images=shares["images"] - 5)
    try:
        assert operator.put("/budget-shares", json={"shares": changed}).json() == changed
        assert api.get("/budget-shares").json() == changed  # stored in the database: every replica sees it
    finally:
        operator.put("/budget-shares", json={"shares": shares})
