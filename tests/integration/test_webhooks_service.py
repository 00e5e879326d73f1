"""The webhooks service interface the orchestrator's router will call, on the real database: endpoint CRUD,
tenancy (another account's endpoint is not found), secrets stored encrypted, clear errors."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from services.webhooks.errors import ConflictError, NotFoundError, SecretsUnavailableError
from services.webhooks.events import EventType, RunData, WebhookEvent
from services.webhooks.schemas import EndpointCreate, EndpointUpdate
from services.webhooks.service import WebhookService
from shared.db.models import Account, WebhookEndpoint
from shared.settings import Settings
from tests.helpers import create_site
from tests.integration.webhook_support import account_of, webhook_service


def spec(**fields: object) -> EndpointCreate:
    return EndpointCreate.model_validate({"url": "https://hooks.example.com/contentline", **fields})


@pytest.fixture(scope="module")
def service(stack: Stack, db: async_sessionmaker[AsyncSession]) -> WebhookService:
    return webhook_service(stack, db)


@pytest.fixture(scope="module")
async def account(api: httpx.Client, db: async_sessionmaker[AsyncSession]) -> str:
    return await account_of(db, create_site(api))


@pytest.fixture(scope="module")
async def stranger(db: async_sessionmaker[AsyncSession]) -> str:
    """Another account (rows straight into the table: how accounts are made differs between branches)."""
    account_id = f"acc_{uuid.uuid4().hex[:12]}"
    async with db.begin() as session:
        session.add(Account(id=account_id, name="stranger"))
    return account_id


async def test_create_list_update_delete(service: WebhookService, account: str) -> None:
    created = await service.create_endpoint(
        account, spec(event_types=["run.failed", "run.completed"], description="ops channel")
    )
    assert created.id.startswith("we_") and created.secret.startswith("whsec_")
    assert created.event_types == ["run.completed", "run.failed"] and created.is_active
    assert created.previous_secret_valid_until is None
    assert created.id in [e.id for e in await service.list_endpoints(account)]

    updated = await service.update_endpoint(
        account, created.id, EndpointUpdate.model_validate({"event_types": ["run.stopped_budget"], "is_active": False})
    )
    assert updated.event_types == ["run.stopped_budget"] and not updated.is_active
    assert updated.url == "https://hooks.example.com/contentline" and updated.description == "ops channel"
    assert (await service.get_endpoint(account, created.id)) == updated

    with pytest.raises(ConflictError, match="disabled"):
        await service.send_test(account, created.id)

    await service.delete_endpoint(account, created.id)
    assert created.id not in [e.id for e in await service.list_endpoints(account)]
    with pytest.raises(NotFoundError, match=created.id):
        await service.get_endpoint(account, created.id)


async def test_another_accounts_endpoint_is_simply_not_found(
    service: WebhookService, account: str, stranger: str
) -> None:
    mine = await service.create_endpoint(account, spec(event_types=["run.completed"]))
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: service.get_endpoint(stranger, mine.id),
            lambda: service.update_endpoint(stranger, mine.id, EndpointUpdate(description="x")),
            lambda: service.delete_endpoint(stranger, mine.id),
            lambda: service.reveal_secret(stranger, mine.id),
            lambda: service.rotate_secret(stranger, mine.id),
            lambda: service.list_deliveries(stranger, mine.id),
            lambda: service.send_test(stranger, mine.id),
        ]
        for call in calls:
            with pytest.raises(NotFoundError) as err:
                await call()
            assert err.value.status == 404
        assert mine.id not in [e.id for e in await service.list_endpoints(stranger)]
        test = await service.send_test(account, mine.id)
        with pytest.raises(NotFoundError):
            await service.get_delivery(stranger, mine.id, test.id)
        with pytest.raises(NotFoundError):
            await service.retry_delivery(stranger, mine.id, test.id)
        assert (await service.get_endpoint(account, mine.id)).description == ""  # the stranger changed nothing
    finally:
        await service.delete_endpoint(account, mine.id)


async def test_secret_is_stored_encrypted_and_needs_the_key(
    stack: Stack, service: WebhookService, db: async_sessionmaker[AsyncSession], account: str
) -> None:
    created = await service.create_endpoint(account, spec(event_types=["run.paused"]))
    try:
        async with db() as session:
            stored = await session.scalar(
                select(WebhookEndpoint.secret_encrypted).where(WebhookEndpoint.id == created.id)
            )
        assert stored and created.secret not in stored and created.secret.removeprefix("whsec_") not in stored
        assert (await service.reveal_secret(account, created.id)).secret == created.secret

        keyless = WebhookService(db, Settings(database_url=stack.database_url, secret_key=SecretStr("")))
        with pytest.raises(SecretsUnavailableError, match="CONTENTLINE_SECRET_KEY is not set") as err:
            await keyless.create_endpoint(account, spec(event_types=["run.paused"]))
        assert err.value.status == 503
        other_key = SecretStr(Fernet.generate_key().decode())
        wrong = WebhookService(db, Settings(database_url=stack.database_url, secret_key=other_key))
        with pytest.raises(SecretsUnavailableError, match="cannot be decrypted"):
            await wrong.reveal_secret(account, created.id)
    finally:
        await service.delete_endpoint(account, created.id)


async def test_bad_calls_get_clear_errors(service: WebhookService, account: str) -> None:
    with pytest.raises(NotFoundError, match="account 'acc_missing' does not exist"):
        await service.create_endpoint("acc_missing", spec(event_types=["run.paused"]))
    created = await service.create_endpoint(account, spec(event_types=["run.paused"]))
    try:
        with pytest.raises(ValueError, match="size between 1 and 200"):
            await service.list_deliveries(account, created.id, size=1000)
        with pytest.raises(NotFoundError, match="delivery 999999999"):
            await service.get_delivery(account, created.id, 999999999)
    finally:
        await service.delete_endpoint(account, created.id)


async def test_a_message_no_endpoint_wants_is_settled_by_one_read(
    service: WebhookService, db: async_sessionmaker[AsyncSession]
) -> None:
    """Run activity nobody subscribed to (most of it) is settled without an attempt; a subscriber still gets it."""
    account = f"acc_{uuid.uuid4().hex[:12]}"  # an account of its own: no other test's endpoints
    async with db.begin() as session:
        session.add(Account(id=account, name="quiet"))

    def event(kind: EventType) -> WebhookEvent:
        data = RunData(run_id="run_x", site_id="site_x", status="completed", stage=7)
        return WebhookEvent(id=uuid.uuid4().hex, type=kind, timestamp=datetime.now(UTC), account_id=account, data=data)

    assert not await service.wanted([])
    assert not await service.wanted([event(EventType.RUN_COMPLETED)])  # no endpoint at all
    created = await service.create_endpoint(account, spec(event_types=["run.failed"]))
    assert not await service.wanted([event(EventType.RUN_COMPLETED)])  # an endpoint for another type
    assert await service.wanted([event(EventType.RUN_COMPLETED), event(EventType.RUN_FAILED)])
    await service.update_endpoint(account, created.id, EndpointUpdate.model_validate({"is_active": False}))
    assert not await service.wanted([event(EventType.RUN_FAILED)])  # a disabled endpoint wants nothing
