"""Accounts, their API keys and budget shares, sites and their configuration (the orchestrator's)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Credits, now_column


# ---------------------------------------------------------------- orchestrator: accounts and sites
class Account(Base):
    __tablename__ = "accounts"
    # The balance can never go below zero, whatever the code above it does.
    __table_args__ = (CheckConstraint("credit_balance >= 0", name="balance_not_negative"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(40), default="starter", server_default="starter")
    credit_balance: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    monthly_credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    created_at: Mapped[datetime] = now_column()


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str | None] = mapped_column(String(253))
    created_at: Mapped[datetime] = now_column()


class ApiKey(Base):
    """An account's API key. Only the SHA-256 of the whole key is stored; `id` is its public prefix."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = now_column()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GlobalBudgetShare(Base):
    """The operator's default budget share per AI function (percent of a run's credit cap); sites may override."""

    __tablename__ = "budget_shares"
    __table_args__ = (CheckConstraint("percent BETWEEN 0 AND 100", name="percent_range"),)
    function: Mapped[str] = mapped_column(String(40), primary_key=True)
    percent: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = now_column()


class SiteConfigRow(Base):
    """The site's automation config (validated JSON, see services.orchestrator.config) + schedule state."""

    __tablename__ = "site_configs"
    __table_args__ = (Index("ix_site_configs_due", "next_run_at", postgresql_where=text("is_enabled")),)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column()
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_schedule_note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = now_column()
