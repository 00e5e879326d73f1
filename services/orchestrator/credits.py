"""Credits: accounts, reservations, the ledger, monthly replenishment.

The ledger is append-only and holds every balance change (grants and debits), each with a unique
idempotency key: a debit is keyed by the command id, a monthly grant by account + period. So replays
and racing replicas never charge or credit twice, and the ledger's sum always equals the balance.
Reservations do not move money: an active run holds `reserved_credits - total_credits_used` of the
account's balance, and available = balance - everything active runs hold. All of this runs with the
account row locked, so concurrent starts of several sites of one account cannot over-commit it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import RunStatus
from shared.db.models import Account, CreditLedger, Run

ACTIVE = [RunStatus.RUNNING.value, RunStatus.PAUSED.value]


async def lock_account(session: AsyncSession, account_id: str) -> Account | None:
    """The account row, locked and re-read (the session may hold a copy read before the lock).

    FOR NO KEY UPDATE, not FOR UPDATE: inserting a run or ledger row takes FOR KEY SHARE on the account
    through the foreign key, and FOR UPDATE would deadlock two transactions that each hold one.
    """
    return await session.scalar(
        select(Account)
        .where(Account.id == account_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


async def held_by_active_runs(session: AsyncSession, account_id: str) -> Decimal:
    held = await session.scalar(
        select(func.coalesce(func.sum(func.greatest(Run.reserved_credits - Run.total_credits_used, 0)), 0)).where(
            Run.account_id == account_id, Run.status.in_(ACTIVE)
        )
    )
    return Decimal(held or 0)


async def available(session: AsyncSession, account: Account) -> Decimal:
    return account.credit_balance - await held_by_active_runs(session, account.id)


async def _append(
    session: AsyncSession,
    account: Account,
    key: str,
    kind: str,
    amount: Decimal,
    run_id: str | None,
    detail: dict[str, Any],
) -> bool:
    """Add a ledger row and move the balance, once per key. The account row must be locked."""
    after = account.credit_balance + amount
    row_id = await session.scalar(
        insert(CreditLedger)
        .values(
            account_id=account.id,
            run_id=run_id,
            idempotency_key=key,
            kind=kind,
            amount=amount,
            balance_after=after,
            detail=detail,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(CreditLedger.id)
    )
    if row_id is None:
        return False
    account.credit_balance = after
    return True


async def grant(session: AsyncSession, account: Account, key: str, amount: Decimal, detail: dict[str, Any]) -> bool:
    return await _append(session, account, key, "grant", amount, None, detail)


async def debit(
    session: AsyncSession, account_id: str, run_id: str, key: str, amount: Decimal, detail: dict[str, Any]
) -> Decimal | None:
    """Charge up to `amount` once per key; returns what was charged, None for a replayed key.

    The balance never goes below zero: reservations make an overrun rare (batches are released only
    when their estimate fits), and what cannot be collected is recorded in the entry's detail.
    """
    account = await lock_account(session, account_id)
    if account is None:
        raise LookupError(f"account {account_id} not found")
    charged = min(amount, max(account.credit_balance, Decimal(0)))
    if charged < amount:
        detail = detail | {"uncollected": str(amount - charged)}
    if not await _append(session, account, key, "debit", -charged, run_id, detail):
        return None
    return charged


def period_of(now: datetime) -> str:
    return f"{now:%Y-%m}"


def monthly_key(account_id: Any, period: str) -> Any:
    """The ledger key of an account's monthly grant; works on a str or on the `Account.id` column."""
    return "grant:monthly:" + account_id + ":" + period


async def replenish(session: AsyncSession, account_id: str, now: datetime) -> bool:
    """Grant the plan's monthly credits for the period of `now`: exactly once per account and period."""
    account = await lock_account(session, account_id)
    if account is None or account.monthly_credits <= 0:
        return False
    period = period_of(now)
    return await grant(
        session,
        account,
        monthly_key(account.id, period),
        account.monthly_credits,
        {"reason": "monthly replenishment", "plan": account.plan, "period": period},
    )
