"""The credit ledger: every balance change is an append-only row with a unique idempotency key.

A debit is keyed by the command id, a monthly grant by account + period, an operator adjustment by the
caller's Idempotency-Key: replays and racing replicas never charge or credit twice, and the ledger's sum
always equals the balance. Everything here runs with the account row locked (`lock_account`), so
concurrent starts of several sites of one account cannot over-commit it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.db.models import Account, CreditLedger

GRANT, DEBIT, ADJUSTMENT = "grant", "debit", "adjustment"


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


async def append(
    session: AsyncSession,
    account: Account,
    key: str,
    kind: str,
    amount: Decimal,
    run_id: str | None,
    detail: dict[str, Any],
) -> CreditLedger | None:
    """Add a ledger row and move the balance, once per key (None: the key was used before).
    The account row must be locked."""
    after = account.credit_balance + amount
    row = await session.scalar(
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
        .returning(CreditLedger)
    )
    if not isinstance(row, CreditLedger):
        return None
    account.credit_balance = after
    return row


async def grant(session: AsyncSession, account: Account, key: str, amount: Decimal, detail: dict[str, Any]) -> bool:
    return await append(session, account, key, GRANT, amount, None, detail) is not None


def collectable(balance: Decimal, amount: Decimal, detail: dict[str, Any]) -> tuple[Decimal, dict[str, Any]]:
    """What a debit of `amount` charges from `balance` (never below zero), and its detail with what is left
    uncollected."""
    charged = min(amount, max(balance, Decimal(0)))
    return charged, (detail | {"uncollected": str(amount - charged)} if charged < amount else detail)


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
    charged, detail = collectable(account.credit_balance, amount, detail)
    if await append(session, account, key, DEBIT, -charged, run_id, detail) is None:
        return None
    metrics.credits_debited(session, charged, detail.get("stage"))
    return charged


async def debit_many(
    session: AsyncSession, account_id: str, run_id: str, entries: list[tuple[str, Decimal, dict[str, Any]]]
) -> list[Decimal | None]:
    """`debit` for several (key, amount, detail) in order, as one debit after another would charge them
    (a group of results): the account locked once, the keys used before read in one statement, the new rows
    inserted in one. Per entry what was charged, None for a key used before (or earlier in `entries`)."""
    if len(entries) == 1:
        key, amount, detail = entries[0]
        return [await debit(session, account_id, run_id, key, amount, detail)]
    if not entries:
        return []
    account = await lock_account(session, account_id)
    if account is None:
        raise LookupError(f"account {account_id} not found")
    keys = [key for key, _, _ in entries]
    used = set(
        (
            await session.scalars(select(CreditLedger.idempotency_key).where(CreditLedger.idempotency_key.in_(keys)))
        ).all()
    )
    balance = account.credit_balance
    rows: list[dict[str, Any]] = []
    out: list[Decimal | None] = []
    for key, amount, asked in entries:
        if key in used:
            out.append(None)
            continue
        used.add(key)
        charged, detail = collectable(balance, amount, asked)
        balance -= charged
        rows.append(
            {
                "account_id": account.id,
                "run_id": run_id,
                "idempotency_key": key,
                "kind": DEBIT,
                "amount": -charged,
                "balance_after": balance,
                "detail": detail,
            }
        )
        out.append(charged)
    if rows:
        # The account row is locked, and a debit's key is taken only under its account's lock: none of these
        # can appear between the read above and this insert (the conflict clause would hide it: checked).
        # Rows as parameters: one cached statement (a VALUES list in the statement is compiled every time).
        stmt = insert(CreditLedger).on_conflict_do_nothing(index_elements=["idempotency_key"])
        inserted = (await session.scalars(stmt.returning(CreditLedger.idempotency_key), rows)).all()
        if len(inserted) != len(rows):
            raise RuntimeError(f"account {account_id}: ledger keys appeared while the account was locked")
        account.credit_balance = balance
        for row in rows:
            metrics.credits_debited(session, -row["amount"], row["detail"].get("stage"))
    return out


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
