"""SQL of the accounts domain: accounts, API keys, ledger reads. Every query names the account it touches."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.accounts import ledger
from shared.db.models import Account, ApiKey, CreditLedger

TOUCH_EVERY = timedelta(seconds=60)


async def get_account(session: AsyncSession, account_id: str) -> Account | None:
    return await session.get(Account, account_id)


async def list_accounts(session: AsyncSession, page: int, size: int) -> list[Account]:
    stmt = select(Account).order_by(Account.created_at, Account.id).offset((page - 1) * size).limit(size)
    return list((await session.scalars(stmt)).all())


async def ledger_page(session: AsyncSession, account_id: str, page: int, size: int) -> list[CreditLedger]:
    stmt = (
        select(CreditLedger)
        .where(CreditLedger.account_id == account_id)
        .order_by(CreditLedger.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list((await session.scalars(stmt)).all())


async def ledger_entry(session: AsyncSession, account_id: str, key: str) -> CreditLedger | None:
    return await session.scalar(
        select(CreditLedger).where(CreditLedger.account_id == account_id, CreditLedger.idempotency_key == key)
    )


async def accounts_missing_monthly_grant(session: AsyncSession, now: datetime) -> list[str]:
    """Accounts with a monthly allowance and no grant for `now`'s period yet (the ticker asks often)."""
    stmt = select(Account.id).where(
        Account.monthly_credits > 0,
        ~exists().where(CreditLedger.idempotency_key == ledger.monthly_key(Account.id, ledger.period_of(now))),
    )
    return list((await session.scalars(stmt)).all())


async def keys_of(session: AsyncSession, account_id: str) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at, ApiKey.id)
    return list((await session.scalars(stmt)).all())


async def key_of(session: AsyncSession, account_id: str, key_id: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.id == key_id))


async def live_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    """The key with this id unless revoked: authentication is the one lookup that has no account yet."""
    return await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))


async def touch_key(session: AsyncSession, key_id: str, now: datetime) -> None:
    """Record use at most once a minute per key: a read-heavy client must not turn every GET into a write."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - TOUCH_EVERY))
        .values(last_used_at=now)
    )
