"""SQL of the webhooks service: endpoints, deliveries, the dispatcher's claims. Times come from the database's
clock (`now()`) throughout, so replicas with skewed clocks agree on what is due.

Every query of endpoint or delivery rows on behalf of a caller takes the caller's account and filters by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.webhooks.events import WebhookEvent
from shared.db.models import Account, WebhookDelivery, WebhookEndpoint

DUE_STATUSES = ("pending", "failed")


# ---------------------------------------------------------------- endpoints
async def account_exists(session: AsyncSession, account_id: str) -> bool:
    return bool(await session.scalar(select(exists().where(Account.id == account_id))))


async def get_endpoint(
    session: AsyncSession, account_id: str, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint | None:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).one_or_none()


async def list_endpoints(session: AsyncSession, account_id: str) -> list[WebhookEndpoint]:
    stmt = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list((await session.scalars(stmt)).all())


async def delete_endpoint(session: AsyncSession, account_id: str, endpoint_id: str) -> bool:
    """Deletes the endpoint and (ON DELETE CASCADE) its delivery log; a send in flight just finds no row."""
    result = await session.execute(
        delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id)
    )
    return _rowcount(result) > 0


async def subscribed_endpoints(session: AsyncSession, event: WebhookEvent) -> list[str]:
    """Active endpoints of the event's account that want its type and existed when it happened (an endpoint
    created later does not get a backlog of older events replayed to it)."""
    stmt = select(WebhookEndpoint.id).where(
        WebhookEndpoint.account_id == event.account_id,
        WebhookEndpoint.is_active,
        WebhookEndpoint.event_types.contains([event.type.value]),
        WebhookEndpoint.created_at <= event.timestamp,
    )
    return list((await session.scalars(stmt)).all())


# ---------------------------------------------------------------- deliveries
async def add_deliveries(session: AsyncSession, event: WebhookEvent, endpoint_ids: Sequence[str]) -> list[int]:
    """One pending delivery per endpoint, due now; an (endpoint, event) pair that exists is left alone."""
    if not endpoint_ids:
        return []
    payload = event.model_dump(mode="json")
    stmt = (
        insert(WebhookDelivery)
        .values(
            [
                {
                    "account_id": event.account_id,
                    "endpoint_id": endpoint_id,
                    "event_id": event.id,
                    "event_type": event.type.value,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": func.now(),
                }
                for endpoint_id in endpoint_ids
            ]
        )
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.endpoint_id, WebhookDelivery.event_id])
        .returning(WebhookDelivery.id)
    )
    return list((await session.scalars(stmt)).all())


async def get_delivery(
    session: AsyncSession, account_id: str, endpoint_id: str, delivery_id: int, *, lock: bool = False
) -> WebhookDelivery | None:
    stmt = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id,
        WebhookDelivery.endpoint_id == endpoint_id,
        WebhookDelivery.account_id == account_id,
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).one_or_none()


async def list_deliveries(
    session: AsyncSession, account_id: str, endpoint_id: str, status: str | None, offset: int, limit: int
) -> tuple[list[WebhookDelivery], int]:
    """A page of the endpoint's delivery log, newest first, and the total matching."""
    where = [WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.account_id == account_id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = await session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where))
    rows = await session.scalars(
        select(WebhookDelivery).where(*where).order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit)
    )
    return list(rows.all()), int(total or 0)


async def prune_deliveries(session: AsyncSession, older_than: timedelta) -> int:
    result = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status.in_(("delivered", "dead")),
            WebhookDelivery.updated_at < func.now() - older_than,
        )
    )
    return _rowcount(result)


# ---------------------------------------------------------------- the dispatcher
@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt: `attempts` counts it already and fences the outcome's update."""

    id: int
    attempts: int
    endpoint_id: str
    url: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    secret_encrypted: str
    previous_secret_encrypted: str | None
    previous_secret_expires_at: datetime | None


# Due deliveries, at most `per_endpoint` in flight per endpoint (counting those this process already has in
# flight) and `limit` in all. Candidates are taken per active endpoint (a LATERAL probe of the due index), so a
# dead endpoint's backlog, however long, never hides other endpoints' deliveries; first attempts go before
# retries, then the oldest first. Rows another replica is claiming are skipped (SKIP LOCKED); the re-check after
# the lock drops rows another replica claimed and committed since.
_CLAIM = text(
    """
    WITH candidates AS (
        SELECT due.id, due.endpoint_id, due.attempts, due.next_attempt_at
        FROM webhook_endpoints e
        CROSS JOIN LATERAL (
            SELECT d.id, d.endpoint_id, d.attempts, d.next_attempt_at
            FROM webhook_deliveries d
            WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at
            LIMIT :per_endpoint
        ) AS due
        WHERE e.is_active
    ), ranked AS (
        SELECT c.id, c.attempts, c.next_attempt_at,
               row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.id)
                 + coalesce(busy.n, 0) AS slot
        FROM candidates c
        LEFT JOIN unnest(CAST(:busy_ids AS text[]), CAST(:busy_counts AS int[])) AS busy(endpoint_id, n)
          ON busy.endpoint_id = c.endpoint_id
    )
    SELECT d.id FROM webhook_deliveries d
    WHERE d.id IN (SELECT id FROM ranked WHERE slot <= :per_endpoint ORDER BY attempts, next_attempt_at LIMIT :limit)
      AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
    FOR UPDATE OF d SKIP LOCKED
    """
)


async def claim_due(
    session: AsyncSession, limit: int, per_endpoint: int, busy: Mapping[str, int], lease: timedelta
) -> list[Claimed]:
    """Claim due deliveries for one attempt each: count the attempt and push `next_attempt_at` out by the lease,
    so no other replica takes them while they are in flight; a process that dies mid-send leaves the row to be
    retried when the lease runs out (at least once)."""
    ids = list(
        (
            await session.scalars(
                _CLAIM,
                {
                    "busy_ids": list(busy),
                    "busy_counts": list(busy.values()),
                    "per_endpoint": per_endpoint,
                    "limit": limit,
                },
            )
        ).all()
    )
    if not ids:
        return []
    d, e = WebhookDelivery, WebhookEndpoint
    rows = await session.execute(
        update(d)
        .where(d.id.in_(ids), e.id == d.endpoint_id)
        .values(
            attempts=d.attempts + 1,
            next_attempt_at=func.now() + lease,
            last_attempt_at=func.now(),
            updated_at=func.now(),
        )
        .returning(
            d.id,
            d.attempts,
            d.endpoint_id,
            e.url,
            d.event_id,
            d.event_type,
            d.payload,
            e.secret_encrypted,
            e.previous_secret_encrypted,
            e.previous_secret_expires_at,
        )
    )
    return sorted((Claimed(*row) for row in rows.all()), key=lambda c: c.id)


def _attempt_of(claimed: Claimed) -> list[Any]:
    # The outcome is recorded only while the row is still this attempt's (not re-claimed after a lost lease).
    d = WebhookDelivery
    return [d.id == claimed.id, d.attempts == claimed.attempts, d.status.in_(DUE_STATUSES)]


async def mark_delivered(session: AsyncSession, claimed: Claimed, status_code: int) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(*_attempt_of(claimed))
        .values(
            status="delivered",
            last_status_code=status_code,
            last_error=None,
            delivered_at=func.now(),
            updated_at=func.now(),
        )
    )


async def mark_failed(
    session: AsyncSession, claimed: Claimed, status_code: int | None, error: str, retry_in: timedelta | None
) -> None:
    """Schedule the next attempt `retry_in` from now, or (None) give the delivery up: dead."""
    values: dict[str, Any] = {
        "last_status_code": status_code,
        "last_error": error[:2000],
        "updated_at": func.now(),
    }
    if retry_in is None:
        values["status"] = "dead"
    else:
        values |= {"status": "failed", "next_attempt_at": func.now() + retry_in}
    await session.execute(update(WebhookDelivery).where(*_attempt_of(claimed)).values(**values))


async def disable_endpoint(session: AsyncSession, endpoint_id: str, reason: str) -> None:
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(is_active=False, disabled_reason=reason[:2000], updated_at=func.now())
    )


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0) if isinstance(result, CursorResult) else 0
