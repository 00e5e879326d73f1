"""Every service's own rows: model calls, the inbox (idempotency), delivery attempts and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, now_column


# ---------------------------------------------------------------- every service: its own rows
class AiCall(Base):
    """One row per model call: the usage record that credits are derived from."""

    __tablename__ = "ai_calls"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    service: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    item_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # chat|embeddings|image
    model: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(60))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text)
    ms: Mapped[int] = mapped_column(Integer, default=0)
    # ok, or what went wrong (shared.ai.FailureKind: cut_off, invalid_json, timeout, ...); failed requests
    # keep their tokens, so what re-asks cost is visible.
    outcome: Mapped[str] = mapped_column(String(30), default="ok", server_default="ok")
    finish_reason: Mapped[str | None] = mapped_column(String(30))
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = now_column()


class InboxMessage(Base):
    """Idempotent consumers: a row per (consumer, message_id), written with the work's results."""

    __tablename__ = "inbox"
    consumer: Mapped[str] = mapped_column(String(60), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = now_column()
    # What a worker answered (the StageResult payload): a command asked again gets the same message back.
    result: Mapped[dict[str, Any] | None] = mapped_column()


class DeliveryAttempt(Base):
    """How often a consumer has started on a message that has not finished yet: survives restarts and
    rebalances, so a message that keeps failing (or keeps killing its process) is given up on for good."""

    __tablename__ = "delivery_attempts"
    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = now_column()


class OutboxMessage(Base):
    """Transactional outbox: written with the result it announces, relayed to Kafka by its producer."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "producer",
            "id",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index("ix_outbox_parked", "id", postgresql_where=text("parked_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    producer: Mapped[str] = mapped_column(String(60))
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = now_column()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A row the broker keeps refusing (e.g. too large) is parked, not retried forever: the relay moves on
    # and the row stays here, listed by the orchestrator's API, until an operator retries it.
    send_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
