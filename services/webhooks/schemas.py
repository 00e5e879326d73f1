"""Inputs and views of the webhooks service interface (the request and response bodies of its routes).

Validation errors name the field and the reason, so a router turns them into 422s as they are.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints, field_validator, model_validator

from services.webhooks.events import SUBSCRIBABLE, EventType

WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"])]


def _subscribable(value: list[EventType]) -> list[EventType]:
    bad = [t.value for t in value if t not in SUBSCRIBABLE]
    if bad:
        raise ValueError(f"{', '.join(bad)} cannot be subscribed to (send a test event instead)")
    return sorted(set(value), key=lambda t: t.value)  # a set, kept in a stable order


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt
    FAILED = "failed"  # the last attempt failed; the next one is at next_attempt_at
    DELIVERED = "delivered"  # a 2xx answer
    DEAD = "dead"  # attempts exhausted, or the receiver answered 410 Gone


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    event_types: list[EventType] = Field(min_length=1, max_length=len(EventType))
    description: str = Field(default="", max_length=300)
    is_active: bool = True

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[EventType]) -> list[EventType]:
        return _subscribable(value)


class EndpointUpdate(BaseModel):
    """Only the fields given change. Re-activating an endpoint clears its disabled reason."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=len(EventType))
    description: str | None = Field(default=None, max_length=300)
    is_active: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[EventType] | None) -> list[EventType] | None:
        return None if value is None else _subscribable(value)

    @model_validator(mode="after")
    def _something(self) -> EndpointUpdate:
        given = {name for name in self.model_fields_set if getattr(self, name) is not None}
        if not given:
            raise ValueError("nothing to change: give at least one of url, event_types, description, is_active")
        return self


class EndpointView(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    is_active: bool
    disabled_reason: str | None
    # After a rotation the previous secret also signs until then (None: one secret in use).
    previous_secret_valid_until: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointView):
    secret: str  # whsec_...: the receiver verifies signatures with it


class EndpointSecret(BaseModel):
    endpoint_id: str
    secret: str
    previous_secret_valid_until: datetime | None


class DeliveryView(BaseModel):
    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None  # None once delivered or dead
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryView):
    payload: dict[str, Any]  # the request body (a services.webhooks.events.WebhookEvent)


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    page: int
    size: int
    total: int
