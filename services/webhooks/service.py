"""The webhooks service interface (no Kafka here): endpoints, their delivery log, test events, secret rotation,
and turning source events into deliveries.

The orchestrator's router calls the account-scoped methods with the authenticated account; an endpoint or
delivery of another account raises NotFoundError exactly like an unknown id. Inputs come as the pydantic
models of `services.webhooks.schemas`, whose validation errors name the field.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.webhooks import crypto
from services.webhooks import repository as repo
from services.webhooks.errors import ConflictError, NotFoundError, SecretsUnavailableError
from services.webhooks.events import EventType, TestData, WebhookEvent, new_event_id
from services.webhooks.schemas import (
    DeliveryDetail,
    DeliveryPage,
    DeliveryStatus,
    DeliveryView,
    EndpointCreate,
    EndpointCreated,
    EndpointSecret,
    EndpointUpdate,
    EndpointView,
)
from services.webhooks.signing import new_secret
from shared.contracts import utcnow
from shared.db.models import WebhookDelivery, WebhookEndpoint
from shared.delivery import claim_inbox
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 200


def endpoint_view(row: WebhookEndpoint) -> EndpointView:
    rotating = row.previous_secret_expires_at
    return EndpointView(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        is_active=row.is_active,
        disabled_reason=row.disabled_reason,
        previous_secret_valid_until=rotating if rotating is not None and rotating > utcnow() else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_view(row: WebhookDelivery) -> DeliveryView:
    status = DeliveryStatus(row.status)
    due = status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
    return DeliveryView(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if due else None,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


class WebhookService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._on_enqueued = on_enqueued  # wakes this process's dispatcher after new deliveries commit

    # ------------------------------------------------------------------ endpoints
    async def create_endpoint(self, account_id: str, spec: EndpointCreate) -> EndpointCreated:
        """A new endpoint with a fresh signing secret, returned once here (and by `reveal_secret`)."""
        secret = new_secret()
        row = WebhookEndpoint(
            id="we_" + uuid.uuid4().hex,
            account_id=account_id,
            url=str(spec.url),
            description=spec.description,
            event_types=[t.value for t in spec.event_types],
            secret_encrypted=self._encrypt(secret),
            is_active=spec.is_active,
        )
        async with self._sessions.begin() as session:
            if not await repo.account_exists(session, account_id):
                raise NotFoundError(f"account {account_id!r} does not exist")
            session.add(row)
            await session.flush()
            await session.refresh(row)
        return EndpointCreated(**endpoint_view(row).model_dump(), secret=secret)

    async def list_endpoints(self, account_id: str) -> list[EndpointView]:
        async with self._sessions() as session:
            return [endpoint_view(row) for row in await repo.list_endpoints(session, account_id)]

    async def get_endpoint(self, account_id: str, endpoint_id: str) -> EndpointView:
        async with self._sessions() as session:
            return endpoint_view(await self._endpoint(session, account_id, endpoint_id))

    async def update_endpoint(self, account_id: str, endpoint_id: str, patch: EndpointUpdate) -> EndpointView:
        async with self._sessions.begin() as session:
            row = await self._endpoint(session, account_id, endpoint_id, lock=True)
            if patch.url is not None:
                row.url = str(patch.url)
            if patch.event_types is not None:
                row.event_types = [t.value for t in patch.event_types]
            if patch.description is not None:
                row.description = patch.description
            if patch.is_active is not None:
                row.is_active = patch.is_active
                if patch.is_active:
                    row.disabled_reason = None
            row.updated_at = utcnow()
        if row.is_active:
            self._wake()  # deliveries held while it was disabled are due again
        return endpoint_view(row)

    async def delete_endpoint(self, account_id: str, endpoint_id: str) -> None:
        """Deletes the endpoint with its delivery log; pending deliveries are dropped."""
        async with self._sessions.begin() as session:
            if not await repo.delete_endpoint(session, account_id, endpoint_id):
                raise NotFoundError(f"webhook endpoint {endpoint_id!r} does not exist")

    async def reveal_secret(self, account_id: str, endpoint_id: str) -> EndpointSecret:
        async with self._sessions() as session:
            row = await self._endpoint(session, account_id, endpoint_id)
        view = endpoint_view(row)
        return EndpointSecret(
            endpoint_id=row.id,
            secret=self._decrypt(row.secret_encrypted),
            previous_secret_valid_until=view.previous_secret_valid_until,
        )

    async def rotate_secret(self, account_id: str, endpoint_id: str) -> EndpointSecret:
        """A new signing secret, in use at once. The old one keeps signing too (a second signature in the same
        header) for `webhook_secret_grace_hours`, so the receiver can switch over without rejecting events."""
        secret = new_secret()
        grace = timedelta(hours=self._settings.webhook_secret_grace_hours)
        async with self._sessions.begin() as session:
            row = await self._endpoint(session, account_id, endpoint_id, lock=True)
            row.previous_secret_encrypted = row.secret_encrypted if grace else None
            row.previous_secret_expires_at = utcnow() + grace if grace else None
            row.secret_encrypted = self._encrypt(secret)
            row.updated_at = utcnow()
        return EndpointSecret(
            endpoint_id=endpoint_id, secret=secret, previous_secret_valid_until=row.previous_secret_expires_at
        )

    # ------------------------------------------------------------------ the delivery log
    async def list_deliveries(
        self,
        account_id: str,
        endpoint_id: str,
        status: DeliveryStatus | None = None,
        page: int = 1,
        size: int = 50,
    ) -> DeliveryPage:
        """The endpoint's deliveries, newest first, optionally only those in one status."""
        if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page must be >= 1 and size between 1 and {MAX_PAGE_SIZE}")
        async with self._sessions() as session:
            await self._endpoint(session, account_id, endpoint_id)
            rows, total = await repo.list_deliveries(
                session, account_id, endpoint_id, status.value if status else None, (page - 1) * size, size
            )
        return DeliveryPage(items=[delivery_view(r) for r in rows], page=page, size=size, total=total)

    async def get_delivery(self, account_id: str, endpoint_id: str, delivery_id: int) -> DeliveryDetail:
        async with self._sessions() as session:
            row = await repo.get_delivery(session, account_id, endpoint_id, delivery_id)
        if row is None:
            raise NotFoundError(f"delivery {delivery_id} of webhook endpoint {endpoint_id!r} does not exist")
        return DeliveryDetail(**delivery_view(row).model_dump(), payload=row.payload)

    async def send_test(self, account_id: str, endpoint_id: str) -> DeliveryView:
        """A `webhook.test` event to this endpoint, through the same queue, signing and retries as any other."""
        async with self._sessions.begin() as session:
            row = await self._endpoint(session, account_id, endpoint_id)
            if not row.is_active:
                raise ConflictError(f"webhook endpoint {endpoint_id!r} is disabled: enable it to send a test event")
            event = WebhookEvent(
                id=new_event_id(),
                type=EventType.TEST,
                timestamp=utcnow(),
                account_id=account_id,
                data=TestData(endpoint_id=endpoint_id, message="a test event from contentline"),
            )
            [delivery_id] = await repo.add_deliveries(session, event, [endpoint_id])
            delivery = await repo.get_delivery(session, account_id, endpoint_id, delivery_id)
            assert delivery is not None
        self._wake()
        return delivery_view(delivery)

    async def retry_delivery(self, account_id: str, endpoint_id: str, delivery_id: int) -> DeliveryView:
        """Send a dead (or failed) delivery again now, with a fresh attempt count."""
        async with self._sessions.begin() as session:
            row = await repo.get_delivery(session, account_id, endpoint_id, delivery_id, lock=True)
            if row is None:
                raise NotFoundError(f"delivery {delivery_id} of webhook endpoint {endpoint_id!r} does not exist")
            if row.status == DeliveryStatus.DELIVERED:
                raise ConflictError(f"delivery {delivery_id} was already delivered")
            now = utcnow()
            row.status, row.attempts, row.next_attempt_at, row.updated_at = "pending", 0, now, now
        self._wake()
        return delivery_view(row)

    # ------------------------------------------------------------------ from source events
    async def wanted(self, events: list[WebhookEvent]) -> bool:
        """False when no endpoint is subscribed to any of these events (most run activity, for most accounts):
        one read instead of a counted attempt's transactions. True when the read fails: the counted path then
        deals with the outage."""
        if not events:
            return False
        try:
            async with self._sessions() as session:
                for event in events:
                    if await repo.subscribed_endpoints(session, event):
                        return True
            return False
        except Exception:
            log.warning("could not look up webhook subscriptions; handling the message the long way", exc_info=True)
            return True

    async def enqueue(self, consumer: str, message_id: str, events: list[WebhookEvent]) -> int | None:
        """Deliveries for every subscribed endpoint, in the transaction that claims the source message in the
        inbox: a redelivered message adds nothing (None); returns how many deliveries were added."""
        if not events:
            return 0
        async with self._sessions.begin() as session:
            if not await claim_inbox(session, consumer, message_id):
                await session.rollback()
                return None
            added = 0
            for event in events:
                endpoint_ids = await repo.subscribed_endpoints(session, event)
                added += len(await repo.add_deliveries(session, event, endpoint_ids))
        if added:
            log.info("message %s: %d webhook deliveries queued", message_id, added)
            self._wake()
        return added

    # ------------------------------------------------------------------ helpers
    def _wake(self) -> None:
        if self._on_enqueued is not None:
            self._on_enqueued()

    async def _endpoint(
        self, session: AsyncSession, account_id: str, endpoint_id: str, *, lock: bool = False
    ) -> WebhookEndpoint:
        row = await repo.get_endpoint(session, account_id, endpoint_id, lock=lock)
        if row is None:
            raise NotFoundError(f"webhook endpoint {endpoint_id!r} does not exist")
        return row

    def _encrypt(self, secret: str) -> str:
        try:
            return crypto.encrypt(secret, self._settings.secret_key)
        except crypto.SecretKeyError as exc:
            raise SecretsUnavailableError(str(exc)) from exc

    def _decrypt(self, token: str) -> str:
        try:
            return crypto.decrypt(token, self._settings.secret_key)
        except crypto.SecretKeyError as exc:
            raise SecretsUnavailableError(str(exc)) from exc
