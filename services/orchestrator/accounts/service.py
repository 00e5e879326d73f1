"""Accounts, their API keys and their money: creation, balances, the ledger, operator adjustments,
monthly replenishment.

Other domains use the in-transaction functions re-exported here (`lock_account`, `debit`); what active
runs hold back is the runs domain's to say, so it comes in as `reservations` (wired in app.py).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.accounts import keys, ledger
from services.orchestrator.accounts import repository as repo
from services.orchestrator.accounts.views import (
    AccountCreated,
    AccountView,
    Adjustment,
    ApiKeyView,
    LedgerEntry,
    NewApiKey,
    account_view,
)
from services.orchestrator.errors import ConflictError, NotFoundError
from shared.contracts import utcnow
from shared.db.models import Account, ApiKey

lock_account = ledger.lock_account
debit = ledger.debit
debit_many = ledger.debit_many
live_key = repo.live_key  # the dashboard's sessions end with the key they signed in with

Reservations = Callable[[AsyncSession, str], Awaitable[Decimal]]
QUANTUM = Decimal("0.0001")


def _not_found(account_id: str) -> NotFoundError:
    return NotFoundError(f"account {account_id!r} does not exist")


class AccountService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], reservations: Reservations) -> None:
        self._sessions = sessions
        self._reservations = reservations

    async def available(self, session: AsyncSession, account: Account) -> Decimal:
        """Balance minus what active runs hold; call with the account row locked to decide on it."""
        return account.credit_balance - await self._reservations(session, account.id)

    # ------------------------------------------------------------------ accounts
    async def create_account(
        self, account_id: str | None, name: str, plan: str, initial_credits: Decimal, monthly_credits: Decimal
    ) -> AccountCreated:
        account_id = account_id or uuid.uuid4().hex[:16]
        async with self._sessions.begin() as session:
            if await lock_account(session, account_id) is not None:
                raise ConflictError(f"account {account_id!r} already exists")
            account = Account(
                id=account_id, name=name, plan=plan, credit_balance=Decimal(0), monthly_credits=monthly_credits
            )
            session.add(account)
            await session.flush()
            if initial_credits > 0:  # through the ledger, so ledger sum == balance from the first cent
                await ledger.grant(
                    session, account, f"grant:initial:{account_id}", initial_credits, {"reason": "initial credits"}
                )
            first_key = await self._add_key(session, account_id, "initial")
            await session.flush()
            await session.refresh(account)
            return AccountCreated(account=account_view(account, Decimal(0)), api_key=first_key)

    async def view(self, account_id: str) -> AccountView:
        async with self._sessions() as session:
            account = await repo.get_account(session, account_id)
            if account is None:
                raise _not_found(account_id)
            return account_view(account, await self._reservations(session, account_id))

    async def list_accounts(self, page: int, size: int) -> list[AccountView]:
        async with self._sessions() as session:
            return [
                account_view(a, await self._reservations(session, a.id))
                for a in await repo.list_accounts(session, page, size)
            ]

    # ------------------------------------------------------------------ money
    async def ledger(self, account_id: str, page: int, size: int) -> list[LedgerEntry]:
        async with self._sessions() as session:
            if await repo.get_account(session, account_id) is None:
                raise _not_found(account_id)
            return [LedgerEntry.of(r) for r in await repo.ledger_page(session, account_id, page, size)]

    async def adjust(
        self, account_id: str, amount: Decimal, reason: str, idempotency_key: str
    ) -> tuple[Adjustment, bool]:
        """An operator's grant (amount > 0) or correction (< 0), once per Idempotency-Key.

        Returns (the answer, replayed). A replay with the same request gets the first answer again; the
        same key with a different request is a conflict (the client has mixed up its keys).
        """
        amount = amount.quantize(QUANTUM)
        key = f"adjust:{account_id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}"
        fingerprint = hashlib.sha256(f"{amount}\0{reason}".encode()).hexdigest()
        async with self._sessions.begin() as session:
            account = await lock_account(session, account_id)
            if account is None:
                raise _not_found(account_id)
            existing = await repo.ledger_entry(session, account_id, key)
            if existing is not None:
                if existing.detail.get("request_sha256") != fingerprint:
                    raise ConflictError("this Idempotency-Key was used for a different adjustment of this account")
                return Adjustment(account_id=account_id, entry=LedgerEntry.of(existing)), True
            if account.credit_balance + amount < 0:
                raise ConflictError(
                    f"an adjustment of {amount} would take the balance ({account.credit_balance}) below zero",
                    balance=str(account.credit_balance),
                )
            detail = {"reason": reason, "idempotency_key": idempotency_key, "request_sha256": fingerprint}
            row = await ledger.append(session, account, key, ledger.ADJUSTMENT, amount, None, detail)
            assert row is not None  # the key was free under the account lock
            return Adjustment(account_id=account_id, entry=LedgerEntry.of(row)), False

    async def replenish(self, account_id: str, now: datetime | None = None) -> bool:
        async with self._sessions.begin() as session:
            if await repo.get_account(session, account_id) is None:
                raise _not_found(account_id)
            return await ledger.replenish(session, account_id, now or utcnow())

    async def replenish_all(self, now: datetime | None = None) -> int:
        """Monthly grants for every account with a plan allowance; exactly once per account and period."""
        now = now or utcnow()
        async with self._sessions() as session:
            ids = await repo.accounts_missing_monthly_grant(session, now)
        granted = 0
        for account_id in ids:
            async with self._sessions.begin() as session:
                granted += await ledger.replenish(session, account_id, now)
        return granted

    # ------------------------------------------------------------------ API keys
    @staticmethod
    async def _add_key(session: AsyncSession, account_id: str, name: str) -> NewApiKey:
        key_id, whole = keys.new_key()
        row = ApiKey(id=key_id, account_id=account_id, name=name, key_sha256=keys.hash_key(whole))
        session.add(row)
        await session.flush()
        await session.refresh(row)
        return NewApiKey(**ApiKeyView.of(row).model_dump(), key=whole)

    async def create_key(self, account_id: str, name: str) -> NewApiKey:
        async with self._sessions.begin() as session:
            if await repo.get_account(session, account_id) is None:
                raise _not_found(account_id)
            return await self._add_key(session, account_id, name)

    async def list_keys(self, account_id: str) -> list[ApiKeyView]:
        async with self._sessions() as session:
            if await repo.get_account(session, account_id) is None:
                raise _not_found(account_id)
            return [ApiKeyView.of(k) for k in await repo.keys_of(session, account_id)]

    async def revoke_key(self, account_id: str, key_id: str) -> ApiKeyView:
        async with self._sessions.begin() as session:
            row = await repo.key_of(session, account_id, key_id)
            if row is None:
                raise NotFoundError(f"API key {key_id!r} does not exist")
            if row.revoked_at is None:  # revoking twice is harmless and keeps the first time
                row.revoked_at = utcnow()
            return ApiKeyView.of(row)

    async def authenticate(self, token: str) -> tuple[str, str] | None:
        """(account id, key id) for a live key; None for anything else. The hash comparison is constant-time."""
        key_id = keys.key_id_of(token)
        if key_id is None:
            return None
        async with self._sessions() as session:
            row = await repo.live_key(session, key_id)
            if row is None or not keys.same_hash(row.key_sha256, keys.hash_key(token)):
                return None
            now = utcnow()
            if row.last_used_at is None or now - row.last_used_at >= repo.TOUCH_EVERY:
                await repo.touch_key(session, key_id, now)
                await session.commit()
            return row.account_id, row.id
