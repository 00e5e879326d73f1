"""publishing: WordPress connections (orchestrator), publications and their media (publisher) (issue 14)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wordpress_connections",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("app_password_encrypted", sa.Text(), nullable=True),
        sa.Column("app_password_ref", sa.String(length=500), nullable=True),
        sa.Column("default_post_status", sa.String(length=20), server_default="publish", nullable=False),
        sa.Column("category_mapping", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("tag_mapping", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(app_password_encrypted IS NULL) <> (app_password_ref IS NULL)",
            name=op.f("ck_wordpress_connections_one_password_source"),
        ),
        sa.CheckConstraint(
            "default_post_status IN ('publish', 'draft', 'pending', 'private')",
            name=op.f("ck_wordpress_connections_post_status"),
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_wordpress_connections_site_id_sites")),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_wordpress_connections")),
    )
    op.create_table(
        "publications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("draft_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=80), nullable=True),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("remote_post_id", sa.BigInteger(), nullable=True),
        sa.Column("remote_status", sa.String(length=20), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("notes", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('scheduled', 'publishing', 'published', 'failed')", name=op.f("ck_publications_state")
        ),
        sa.ForeignKeyConstraint(["draft_id"], ["drafts.id"], name=op.f("fk_publications_draft_id_drafts")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_publications_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publications")),
        sa.UniqueConstraint("draft_id", name=op.f("uq_publications_draft_id")),
    )
    op.create_index("ix_publications_site_state", "publications", ["site_id", "state"], unique=False)
    op.create_index(
        "ix_publications_sync_due",
        "publications",
        ["next_sync_at"],
        unique=False,
        postgresql_where=sa.text("state = 'published' AND remote_status IS DISTINCT FROM 'deleted'"),
    )
    op.create_table(
        "publication_media",
        sa.Column("publication_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("remote_media_id", sa.BigInteger(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name=op.f("fk_publication_media_publication_id_publications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_publication_media_image_id_images")),
        sa.PrimaryKeyConstraint("publication_id", "image_id", name=op.f("pk_publication_media")),
    )
    _upgrade_schedule()


def _upgrade_schedule() -> None:
    """The orchestrator's side: publishing settings, the publishing schedule, who decided a review."""
    op.add_column(
        "review_decisions",
        sa.Column("decided_by", sa.String(length=20), server_default="person", nullable=False),
    )
    op.create_table(
        "publishing_settings",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("settings", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_publishing_settings_site_id_sites")),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_publishing_settings")),
    )
    op.create_table(
        "publishing_schedule",
        sa.Column("draft_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=80), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("scheduled_publish_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduled_by", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.String(length=30), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("handed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("remote_post_id", sa.BigInteger(), nullable=True),
        sa.Column("remote_status", sa.String(length=20), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state IN ('scheduled', 'unscheduled', 'publishing', 'published', 'failed')",
            name=op.f("ck_publishing_schedule_state"),
        ),
        sa.CheckConstraint(
            "state <> 'scheduled' OR scheduled_publish_at IS NOT NULL",
            name=op.f("ck_publishing_schedule_scheduled_has_slot"),
        ),
        sa.ForeignKeyConstraint(["draft_id"], ["drafts.id"], name=op.f("fk_publishing_schedule_draft_id_drafts")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_publishing_schedule_site_id_sites")),
        sa.PrimaryKeyConstraint("draft_id", name=op.f("pk_publishing_schedule")),
    )
    op.create_index(
        "uq_publishing_schedule_site_slot",
        "publishing_schedule",
        ["site_id", "scheduled_publish_at"],
        unique=True,
        postgresql_where=sa.text("state = 'scheduled'"),
    )
    op.create_index(
        "ix_publishing_schedule_due",
        "publishing_schedule",
        ["scheduled_publish_at"],
        postgresql_where=sa.text("state = 'scheduled'"),
    )
    op.create_index(
        "ix_publishing_schedule_retry",
        "publishing_schedule",
        ["retry_at"],
        postgresql_where=sa.text("state = 'unscheduled'"),
    )
    op.create_index("ix_publishing_schedule_site_state", "publishing_schedule", ["site_id", "state"])


def _downgrade_schedule() -> None:
    op.drop_table("publishing_schedule")  # its indexes go with it
    op.drop_table("publishing_settings")
    op.drop_column("review_decisions", "decided_by")


def downgrade() -> None:
    _downgrade_schedule()
    op.drop_table("publication_media")
    op.drop_index(
        "ix_publications_sync_due",
        table_name="publications",
        postgresql_where=sa.text("state = 'published' AND remote_status IS DISTINCT FROM 'deleted'"),
    )
    op.drop_index("ix_publications_site_state", table_name="publications")
    op.drop_table("publications")
    op.drop_table("wordpress_connections")
