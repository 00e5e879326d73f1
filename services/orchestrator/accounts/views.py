"""What the accounts API answers with."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from shared.db.models import Account, ApiKey, CreditLedger


class AccountView(BaseModel):
    account_id: str
    name: str
    plan: str
    balance: Decimal
    reserved: Decimal = Field(description="held back by active runs")
    available: Decimal = Field(description="balance - reserved: what a new run may use")
    monthly_credits: Decimal
    created_at: AwareDatetime


class LedgerEntry(BaseModel):
    id: int
    at: AwareDatetime
    kind: str = Field(description="grant | debit | adjustment")
    amount: Decimal = Field(description="signed: debits are negative")
    balance_after: Decimal
    run_id: str | None
    key: str = Field(description="the entry's idempotency key")
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: CreditLedger) -> LedgerEntry:
        return cls(
            id=row.id,
            at=row.created_at,
            kind=row.kind,
            amount=row.amount,
            balance_after=row.balance_after,
            run_id=row.run_id,
            key=row.idempotency_key,
            detail=row.detail,
        )


class Adjustment(BaseModel):
    """The answer to a grant/adjust: the same body again for a replayed Idempotency-Key."""

    account_id: str
    entry: LedgerEntry


class ApiKeyView(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="how the key starts (the rest is secret)")
    created_at: AwareDatetime
    last_used_at: AwareDatetime | None = Field(description="updated at most once a minute")
    revoked_at: AwareDatetime | None

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyView:
        return cls(
            id=row.id,
            name=row.name,
            prefix=f"cl_{row.id}_",
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


class NewApiKey(ApiKeyView):
    key: str = Field(description="the whole key: shown this once, stored only as a hash")


class AccountCreated(BaseModel):
    account: AccountView
    api_key: NewApiKey


def account_view(account: Account, reserved: Decimal) -> AccountView:
    return AccountView(
        account_id=account.id,
        name=account.name,
        plan=account.plan,
        balance=account.credit_balance,
        reserved=reserved,
        available=account.credit_balance - reserved,
        monthly_credits=account.monthly_credits,
        created_at=account.created_at,
    )
