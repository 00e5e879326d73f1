"""Webhook endpoints and deliveries, automation rules and their scheduled tasks."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Credits, now_column


# ---------------------------------------------------------------- webhooks (issue 15)
class WebhookEndpoint(Base):
    """An account's receiver of webhook events (services/webhooks).

    The signing secret is needed in plaintext to sign, so it is stored Fernet-encrypted under
    CONTENTLINE_SECRET_KEY, never hashed. After a rotation the previous secret signs too (a second signature
    in the same header) until `previous_secret_expires_at`, so receivers switch over without dropping events.
    """

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(300), default="")
    event_types: Mapped[list[Any]] = mapped_column(default=list)  # names from services.webhooks.events
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)  # e.g. the receiver answered 410 Gone
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()


class WebhookDelivery(Base):
    """One event for one endpoint, retried until delivered or dead. Doubles as the endpoint's delivery log.

    status: pending (no attempt yet) → failed (last attempt failed, next one at `next_attempt_at`) → delivered
    (a 2xx answer) or dead (attempts exhausted, or 410 Gone). (endpoint_id, event_id) is unique: a redelivered
    source event never makes a second delivery.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed', 'dead')", name="status_known"),
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'failed')"),
        ),
        Index("ix_webhook_deliveries_endpoint_log", "endpoint_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header: the same on every attempt
    event_type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- rules (issue 15)
class Rule(Base):
    """An automation rule of a site (IGNY8 seed 003): on a trigger, if every condition holds, run the actions.

    `executions_today` counts executions on the local date `executions_day` (the site's time zone); a rule's row
    is locked while an execution is decided, so the daily limit holds with any number of replicas.
    """

    __tablename__ = "rules"
    __table_args__ = (
        CheckConstraint("max_executions_per_day >= 0", name="max_executions_not_negative"),
        CheckConstraint("credit_limit_per_execution >= 0", name="credit_limit_not_negative"),
        Index("ix_rules_site_trigger", "site_id", "trigger"),
        Index("ix_rules_schedule_due", "next_fire_at", postgresql_where=text("is_active AND trigger = 'schedule'")),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    trigger: Mapped[str] = mapped_column(String(40))
    conditions: Mapped[list[Any]] = mapped_column(default=list)  # [{"field", "operator", "value"}]
    actions: Mapped[list[Any]] = mapped_column(default=list)  # [{"type", ...parameters}]
    schedule_cron: Mapped[str | None] = mapped_column(String(120))
    schedule_timezone: Mapped[str | None] = mapped_column(String(64))
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # schedule rules only
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    max_executions_per_day: Mapped[int] = mapped_column(Integer, default=10)
    credit_limit_per_execution: Mapped[Decimal] = mapped_column(Credits, default=Decimal(100))
    executions_today: Mapped[int] = mapped_column(Integer, default=0)
    executions_day: Mapped[date | None] = mapped_column(Date)
    last_executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()


class ScheduledTask(Base):
    """One execution of a rule: pending → running (its targeted run is under way) → completed | failed, or
    skipped with the reason. (rule_id, event_key) is unique: an event (or a cron instant) executes a rule once.
    """

    __tablename__ = "scheduled_tasks"
    __table_args__ = (
        UniqueConstraint("rule_id", "event_key", name="uq_scheduled_tasks_rule_event"),
        CheckConstraint("status IN ('pending', 'running', 'completed', 'failed', 'skipped')", name="status_known"),
        Index("ix_scheduled_tasks_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_scheduled_tasks_running", "id", postgresql_where=text("status = 'running'")),
        Index("ix_scheduled_tasks_site_log", "site_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    rule_id: Mapped[str] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(40))  # schedule | manual | the entity event type
    # The entity event's message id, "cron:<instant>" for a schedule, None for "execute now" (never deduplicated).
    event_key: Mapped[str | None] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the event's entity fields
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_message: Mapped[str | None] = mapped_column(Text)
    credits_used: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    run_id: Mapped[str | None] = mapped_column(String(80))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = now_column()
