"""content edits: keyword status, draft versions and regeneration, dashboard sessions (issue 16)

* `keywords.disabled_at`: a disabled keyword is never clustered (the stage-1 pending query skips it).
* `drafts.superseded_at`: a rejected draft that was regenerated. One live draft per task (partial unique
  index) instead of one draft per task, so the writer can write the replacement while the old one, its
  images and its decision stay as history.
* `draft_versions`: the text of a draft before each human edit (version 1 is the model's original).
* `dashboard_sessions`: a signed-in browser (the SHA-256 of its cookie), bound to the API key it signed
  in with.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("keywords", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("drafts", sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("uq_drafts_task_id", "drafts", type_="unique")
    op.create_index(
        "uq_drafts_live_task", "drafts", ["task_id"], unique=True, postgresql_where=sa.text("superseded_at IS NULL")
    )
    op.create_index("ix_drafts_task_id", "drafts", ["task_id"])
    op.create_table(
        "draft_versions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("draft_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("meta_title", sa.String(length=60), nullable=False),
        sa.Column("meta_description", sa.String(length=160), nullable=False),
        sa.Column("body_markdown", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["drafts.id"], name=op.f("fk_draft_versions_draft_id_drafts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draft_versions")),
        sa.UniqueConstraint("draft_id", "version", name="uq_draft_versions_draft_version"),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_dashboard_sessions_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_dashboard_sessions_key_id_api_keys")),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index("ix_dashboard_sessions_expires_at", "dashboard_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires_at", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_table("draft_versions")
    op.drop_index("ix_drafts_task_id", table_name="drafts")
    op.drop_index("uq_drafts_live_task", table_name="drafts")
    # Back to one draft per task: superseded drafts cannot stay (their images and decisions go with them).
    op.execute(
        "DELETE FROM review_decisions WHERE draft_id IN (SELECT id FROM drafts WHERE superseded_at IS NOT NULL)"
    )
    op.execute(
        "DELETE FROM images WHERE draft_id IN (SELECT id FROM drafts WHERE superseded_at IS NOT NULL)"
    )
    op.execute(
        "DELETE FROM image_prompts WHERE draft_id IN (SELECT id FROM drafts WHERE superseded_at IS NOT NULL)"
    )
    op.execute("DELETE FROM drafts WHERE superseded_at IS NOT NULL")
    op.create_unique_constraint("uq_drafts_task_id", "drafts", ["task_id"])
    op.drop_column("drafts", "superseded_at")
    op.drop_column("keywords", "disabled_at")
