"""Runs and their batches and results, the credit ledger, activity, review decisions and draft versions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Credits, now_column


# ---------------------------------------------------------------- orchestrator: runs, review, money
class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # One active run per site, enforced by the database: running and paused both count.
        Index(
            "uq_runs_one_active_per_site",
            "site_id",
            unique=True,
            postgresql_where=text("status IN ('running', 'paused')"),
        ),
        Index("ix_runs_site_started", "site_id", "started_at"),
    )
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    trigger: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    initial_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total_credits_used: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    estimated_credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0), server_default="0")
    # Held back from the account's available credits while the run is active (estimate + margin).
    reserved_credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0), server_default="0")
    # The estimate once stage 1 has made the clusters (services.orchestrator.runs.revision); None before.
    revised_estimate: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stopped_reason: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = now_column()
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StageBatch(Base):
    """The batch plan of a stage; `id` is the command id (= the command message's `message_id`)."""

    __tablename__ = "stage_batches"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "seq", name="uq_stage_batches_run_stage_seq"),
        Index("ix_stage_batches_run_stage_status", "run_id", "stage", "status"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    stage: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    item_ids: Mapped[list[Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|released|done|failed|cancelled
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    estimate: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0), server_default="0")
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class StageRunResult(Base):
    __tablename__ = "stage_results"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # running|completed|skipped|stopped|failed
    items_in: Mapped[int] = mapped_column(Integer, default=0)
    items_processed: Mapped[int] = mapped_column(Integer, default=0)
    items_created: Mapped[int] = mapped_column(Integer, default=0)
    items_skipped: Mapped[int] = mapped_column(Integer, default=0)
    items_failed: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[list[Any]] = mapped_column(default=list)
    batches_total: Mapped[int] = mapped_column(Integer, default=0)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    partial: Mapped[bool] = mapped_column(Boolean, default=False)
    stopped_reason: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = now_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CreditLedger(Base):
    """Append-only. A debit is keyed by the command id, so a replayed result never charges twice."""

    __tablename__ = "credit_ledger"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # debit|grant|adjust
    amount: Mapped[Decimal] = mapped_column(Credits)  # signed: debits negative
    balance_after: Mapped[Decimal] = mapped_column(Credits)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = now_column()


class ActivityLog(Base):
    __tablename__ = "activity_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[int | None] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()


class ReviewDecision(Base):
    __tablename__ = "review_decisions"
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(20))  # approved|rejected|published
    note: Mapped[str] = mapped_column(Text, default="")
    # person (the review API) or auto (auto-approval at the end of a run; the note says why).
    decided_by: Mapped[str] = mapped_column(String(20), default="person", server_default="person")
    decided_at: Mapped[datetime] = now_column()


class DraftVersion(Base):
    """A draft's text before a person's edit; version 1 is what the model wrote (issue 16)."""

    __tablename__ = "draft_versions"
    __table_args__ = (UniqueConstraint("draft_id", "version", name="uq_draft_versions_draft_version"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))  # model|edit|restore
    title: Mapped[str] = mapped_column(String(300))
    meta_title: Mapped[str] = mapped_column(String(60))
    meta_description: Mapped[str] = mapped_column(String(160))
    body_markdown: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(16))  # the API key of the person who edited
    created_at: Mapped[datetime] = now_column()


class DashboardSession(Base):
    """A browser signed in to the dashboard with an API key; only the SHA-256 of the cookie is stored."""

    __tablename__ = "dashboard_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class FailingItem(Base):
    """Orchestrator (sites domain): an item whose last run(s) failed it. Its streak counts runs in a row that
    failed it (a success deletes the row); at `park_after_failed_runs` the item is parked: no stage takes it
    in again until a person un-parks it. Stage 4's items are writer tasks, so a draft the quality gate held
    back counts against its task (issue 11)."""

    __tablename__ = "failing_items"
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    failed_runs: Mapped[int] = mapped_column(Integer, default=1)
    last_run_id: Mapped[str] = mapped_column(String(80))
    reasons: Mapped[list[Any]] = mapped_column(default=list)  # the latest few, newest last
    first_failed_at: Mapped[datetime] = now_column()
    last_failed_at: Mapped[datetime] = now_column()
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
