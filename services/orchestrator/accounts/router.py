"""Accounts API: the operator creates accounts and moves credits; an account reads its own balance,
ledger and keys (the operator may read any)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.orchestrator.accounts.service import AccountService
from services.orchestrator.accounts.views import (
    AccountCreated,
    AccountView,
    Adjustment,
    ApiKeyView,
    LedgerEntry,
    NewApiKey,
)
from services.orchestrator.web.auth import AnyCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import ID_PATTERN, AccountId, KeyId, Page, SafeLine

MAX_CREDITS = Decimal(100_000_000)
Credits = Annotated[Decimal, Field(ge=0, le=MAX_CREDITS, decimal_places=4)]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str | None, Field(min_length=1, max_length=64, pattern=ID_PATTERN)] = None
    name: Annotated[SafeLine, Field(min_length=1, max_length=200)]
    plan: Annotated[SafeLine, Field(min_length=1, max_length=40)] = "starter"
    initial_credits: Credits = Decimal(0)
    monthly_credits: Credits = Decimal(0)


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Annotated[Decimal, Field(ge=-MAX_CREDITS, le=MAX_CREDITS, decimal_places=4)] = Field(
        description="credits to add (negative: to take back); not zero"
    )
    reason: Annotated[SafeLine, Field(min_length=1, max_length=500)]

    @field_validator("amount")
    @classmethod
    def _not_zero(cls, value: Decimal) -> Decimal:
        if value == 0:
            raise ValueError("must not be zero")
        return value


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[SafeLine, Field(min_length=1, max_length=100)] = "api"


class Replenished(BaseModel):
    granted: bool = Field(description="False when this period's grant was already made (or no allowance)")
    account: AccountView


class Me(BaseModel):
    kind: Literal["account", "operator"]
    account_id: str | None
    key_id: str | None


IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique token per intended change; a retry with the same key changes nothing twice",
    ),
]
Size = Annotated[int, Query(ge=1, le=500)]


def build(accounts: AccountService) -> list[APIRouter]:
    operator = KindRouter(RouteKind.OPERATOR, tags=["accounts (operator)"])
    owner = KindRouter(RouteKind.OWNER_OR_OPERATOR, tags=["accounts"])
    anyone = KindRouter(RouteKind.ANY_KEY, tags=["accounts"])

    @operator.post("/accounts", status_code=status.HTTP_201_CREATED, responses=responses(409))
    async def create_account(body: AccountIn) -> AccountCreated:
        """Create an account with its first API key (shown once in this answer)."""
        return await accounts.create_account(
            body.id, body.name, body.plan, body.initial_credits, body.monthly_credits
        )

    @operator.get("/accounts")
    async def list_accounts(page: Page = 1, size: Size = 50) -> list[AccountView]:
        return await accounts.list_accounts(page, size)

    @operator.post("/accounts/{account_id}/credits", status_code=status.HTTP_201_CREATED, responses=responses(409))
    async def adjust_credits(
        account_id: AccountId, body: AdjustmentIn, idempotency_key: IdempotencyKey, response: Response
    ) -> Adjustment:
        """Grant (amount > 0) or take back (< 0) credits, once per Idempotency-Key: a replay returns the
        first answer again (header `Idempotent-Replayed: true`) and changes nothing."""
        answer, replayed = await accounts.adjust(account_id, body.amount, body.reason, idempotency_key)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return answer

    @operator.post("/accounts/{account_id}/replenish")
    async def replenish(account_id: AccountId) -> Replenished:
        """Grant this period's monthly credits now (once per period, like the scheduler's own grant)."""
        granted = await accounts.replenish(account_id)
        return Replenished(granted=granted, account=await accounts.view(account_id))

    @owner.get("/accounts/{account_id}")
    async def get_account(account_id: AccountId, caller: AnyCaller) -> AccountView:
        """Balance, what active runs hold back, and what is available."""
        caller.require_owner(account_id)
        return await accounts.view(account_id)

    @owner.get("/accounts/{account_id}/ledger")
    async def ledger(account_id: AccountId, caller: AnyCaller, page: Page = 1, size: Size = 50) -> list[LedgerEntry]:
        """Every balance change, newest first."""
        caller.require_owner(account_id)
        return await accounts.ledger(account_id, page, size)

    @owner.get("/accounts/{account_id}/keys")
    async def list_keys(account_id: AccountId, caller: AnyCaller) -> list[ApiKeyView]:
        """The account's API keys: id, name, prefix, created, last used, revoked (never the secret)."""
        caller.require_owner(account_id)
        return await accounts.list_keys(account_id)

    @owner.post("/accounts/{account_id}/keys", status_code=status.HTTP_201_CREATED)
    async def create_key(account_id: AccountId, caller: AnyCaller, body: KeyIn) -> NewApiKey:
        """A new API key; the whole key is in this answer only."""
        caller.require_owner(account_id)
        return await accounts.create_key(account_id, body.name)

    @owner.delete("/accounts/{account_id}/keys/{key_id}")
    async def revoke_key(account_id: AccountId, key_id: KeyId, caller: AnyCaller) -> ApiKeyView:
        """Revoke a key at once (also the one making this call)."""
        caller.require_owner(account_id)
        return await accounts.revoke_key(account_id, key_id)

    @anyone.get("/me")
    async def me(caller: AnyCaller) -> Me:
        """Who the key belongs to."""
        if caller.is_operator:
            return Me(kind="operator", account_id=None, key_id=None)
        return Me(kind="account", account_id=caller.account_id, key_id=caller.key_id)

    return [operator, owner, anyone]
