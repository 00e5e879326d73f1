"""WordPress connections, publishing settings and schedule (orchestrator), publications (publisher)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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

from shared.db.models.base import Base, now_column


# ---------------------------------------------------------------- orchestrator: WordPress connections (issue 14)
class WordPressConnection(Base):
    """A site's WordPress: written by the orchestrator's API, read by the publisher.

    The application password is stored Fernet-encrypted (shared.secrets, key CONTENTLINE_SECRET_KEY) or as a
    reference to where it lives (`env:NAME`, `file:/path`); exactly one of the two. Never returned or logged.
    """

    __tablename__ = "wordpress_connections"
    __table_args__ = (
        CheckConstraint("(app_password_encrypted IS NULL) <> (app_password_ref IS NULL)", name="one_password_source"),
        CheckConstraint("default_post_status IN ('publish', 'draft', 'pending', 'private')", name="post_status"),
    )
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(500))
    username: Mapped[str] = mapped_column(String(200))
    app_password_encrypted: Mapped[str | None] = mapped_column(Text)
    app_password_ref: Mapped[str | None] = mapped_column(String(500))
    default_post_status: Mapped[str] = mapped_column(String(20), default="publish", server_default="publish")
    category_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'::jsonb"))
    tag_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()


class PublishingSettingsRow(Base):
    """A site's publishing settings (validated JSON, services.orchestrator.publishing.settings); created with
    the defaults on first use. Locking this row serialises slot assignment for its site across replicas."""

    __tablename__ = "publishing_settings"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = now_column()


class ScheduledPublication(Base):
    """An approved draft in its site's publishing schedule: when it is due, whether it was handed to the
    publisher (once: `command_id`), what came of it, or why it has no slot (`reason`)."""

    __tablename__ = "publishing_schedule"
    __table_args__ = (
        CheckConstraint("state IN ('scheduled', 'unscheduled', 'publishing', 'published', 'failed')", name="state"),
        CheckConstraint("state <> 'scheduled' OR scheduled_publish_at IS NOT NULL", name="scheduled_has_slot"),
        # A slot is never given twice, whatever the replicas do (the site's lock is the first line).
        Index(
            "uq_publishing_schedule_site_slot",
            "site_id",
            "scheduled_publish_at",
            unique=True,
            postgresql_where=text("state = 'scheduled'"),
        ),
        # The ticker's work lists: due drafts, and drafts waiting for a slot to be tried again.
        Index("ix_publishing_schedule_due", "scheduled_publish_at", postgresql_where=text("state = 'scheduled'")),
        Index("ix_publishing_schedule_retry", "retry_at", postgresql_where=text("state = 'unscheduled'")),
        Index("ix_publishing_schedule_site_state", "site_id", "state"),
    )
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    run_id: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(20))
    scheduled_publish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_by: Mapped[str] = mapped_column(String(20), default="auto")  # auto (the mode) | person
    reason: Mapped[str | None] = mapped_column(Text)  # why unscheduled, or why publishing failed
    reason_code: Mapped[str | None] = mapped_column(String(30))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # unscheduled: next try
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    command_id: Mapped[str | None] = mapped_column(String(64))  # the PublishCommand that holds it now
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # commands sent
    handed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    remote_post_id: Mapped[int | None] = mapped_column(BigInteger)
    remote_status: Mapped[str | None] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()


# ---------------------------------------------------------------- publisher
class Publication(Base):
    """One per draft sent to WordPress: the remote post and where publishing stands (PublicationState)."""

    __tablename__ = "publications"
    __table_args__ = (
        CheckConstraint("state IN ('scheduled', 'publishing', 'published', 'failed')", name="state"),
        Index("ix_publications_site_state", "site_id", "state"),
        # The status sync's work list: published posts not known to be gone, by when they are due.
        Index(
            "ix_publications_sync_due",
            "next_sync_at",
            postgresql_where=text("state = 'published' AND remote_status IS DISTINCT FROM 'deleted'"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), unique=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    run_id: Mapped[str | None] = mapped_column(String(80))
    command_id: Mapped[str | None] = mapped_column(String(64))  # the command that last worked on it
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    remote_post_id: Mapped[int | None] = mapped_column(BigInteger)
    remote_status: Mapped[str | None] = mapped_column(String(20))  # RemoteStatus
    url: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PublicationMedia(Base):
    """An image of a publication uploaded to the site's media library; recorded right after each upload."""

    __tablename__ = "publication_media"
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    remote_media_id: Mapped[int] = mapped_column(BigInteger)
    source_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
