"""Webhooks API: an account's endpoints, their secrets, test events and delivery logs (services.webhooks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, ClassVar

from fastapi import APIRouter, Path, Query, Response, status

from services.orchestrator.errors import ConflictError, NotFoundError, ProblemError
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import INT64_MAX, Page, ResourceId
from services.webhooks import errors
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
from services.webhooks.service import WebhookService

EndpointId = Annotated[ResourceId, Path(description="A webhook endpoint id of the caller's account")]
DeliveryId = Annotated[int, Path(ge=1, le=INT64_MAX, description="A delivery id of the endpoint")]


class SecretsUnavailable(ProblemError):
    status = 503
    slug: ClassVar[str] = "secrets-unavailable"


@asynccontextmanager
async def problems() -> AsyncIterator[None]:
    """The webhooks service's errors as the API's problem bodies."""
    try:
        yield
    except errors.NotFoundError as exc:
        raise NotFoundError(exc.detail) from exc
    except errors.ConflictError as exc:
        raise ConflictError(exc.detail) from exc
    except errors.SecretsUnavailableError as exc:
        raise SecretsUnavailable("webhook secrets are unavailable: the server's secret key is not set up") from exc


def build(hooks: WebhookService) -> list[APIRouter]:
    api = KindRouter(RouteKind.ACCOUNT, tags=["webhooks"])

    @api.post("/webhooks", status_code=status.HTTP_201_CREATED, responses=responses(503))
    async def create_endpoint(spec: EndpointCreate, caller: TenantCaller) -> EndpointCreated:
        """An endpoint of the caller's account; the signing secret (whsec_...) is in the answer."""
        async with problems():
            return await hooks.create_endpoint(caller.tenant, spec)

    @api.get("/webhooks")
    async def list_endpoints(caller: TenantCaller) -> list[EndpointView]:
        return await hooks.list_endpoints(caller.tenant)

    @api.get("/webhooks/{endpoint_id}")
    async def get_endpoint(endpoint_id: EndpointId, caller: TenantCaller) -> EndpointView:
        async with problems():
            return await hooks.get_endpoint(caller.tenant, endpoint_id)

    @api.patch("/webhooks/{endpoint_id}")
    async def update_endpoint(endpoint_id: EndpointId, patch: EndpointUpdate, caller: TenantCaller) -> EndpointView:
        """Only the fields given change; enabling an endpoint clears its disabled reason."""
        async with problems():
            return await hooks.update_endpoint(caller.tenant, endpoint_id, patch)

    @api.delete("/webhooks/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_endpoint(endpoint_id: EndpointId, caller: TenantCaller) -> Response:
        """Deletes the endpoint with its delivery log; pending deliveries are dropped."""
        async with problems():
            await hooks.delete_endpoint(caller.tenant, endpoint_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @api.get("/webhooks/{endpoint_id}/secret", responses=responses(503))
    async def reveal_secret(endpoint_id: EndpointId, caller: TenantCaller) -> EndpointSecret:
        async with problems():
            return await hooks.reveal_secret(caller.tenant, endpoint_id)

    @api.post("/webhooks/{endpoint_id}/secret/rotate", responses=responses(503))
    async def rotate_secret(endpoint_id: EndpointId, caller: TenantCaller) -> EndpointSecret:
        """A new secret, in use at once; the previous one also signs for the grace period."""
        async with problems():
            return await hooks.rotate_secret(caller.tenant, endpoint_id)

    @api.post("/webhooks/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, responses=responses(409))
    async def send_test_event(endpoint_id: EndpointId, caller: TenantCaller) -> DeliveryView:
        """Queue a `webhook.test` event to this endpoint (signed and retried like any other)."""
        async with problems():
            return await hooks.send_test(caller.tenant, endpoint_id)

    @api.get("/webhooks/{endpoint_id}/deliveries")
    async def list_deliveries(
        endpoint_id: EndpointId,
        caller: TenantCaller,
        delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
        page: Page = 1,
        size: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> DeliveryPage:
        """The endpoint's delivery log, newest first."""
        async with problems():
            return await hooks.list_deliveries(caller.tenant, endpoint_id, delivery_status, page, size)

    @api.get("/webhooks/{endpoint_id}/deliveries/{delivery_id}")
    async def get_delivery(endpoint_id: EndpointId, delivery_id: DeliveryId, caller: TenantCaller) -> DeliveryDetail:
        async with problems():
            return await hooks.get_delivery(caller.tenant, endpoint_id, delivery_id)

    @api.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry", responses=responses(409))
    async def retry_delivery(endpoint_id: EndpointId, delivery_id: DeliveryId, caller: TenantCaller) -> DeliveryView:
        """Send a failed or dead delivery again now, with a fresh attempt count."""
        async with problems():
            return await hooks.retry_delivery(caller.tenant, endpoint_id, delivery_id)

    return [api]
