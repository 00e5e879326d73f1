"""AI providers: call usage of failed tries, per-function settings (issues 10, 11)

ai_calls gains what a request came to (outcome: ok or the failure's name), the provider's finish_reason and
the output budget sent, so the tokens of cut-off and invalid replies are visible per call. drafts gain the
quality gate's verdict (quality_passed) for whoever holds low-quality drafts back from images.
failing_items (orchestrator): items that failed their last run(s), parked after N runs in a row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ai_calls", sa.Column("outcome", sa.String(length=30), server_default="ok", nullable=False))
    op.add_column("ai_calls", sa.Column("finish_reason", sa.String(length=30), nullable=True))
    op.add_column("ai_calls", sa.Column("max_tokens", sa.Integer(), nullable=True))
    op.add_column("drafts", sa.Column("quality_passed", sa.Boolean(), server_default=sa.text("true"), nullable=False))
    op.create_table(
        "failing_items",
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("failed_runs", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.String(length=80), nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_failing_items_site_id_sites")),
        sa.PrimaryKeyConstraint("stage", "item_id", name=op.f("pk_failing_items")),
    )
    op.create_index(op.f("ix_failing_items_site_id"), "failing_items", ["site_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_failing_items_site_id"), table_name="failing_items")
    op.drop_table("failing_items")
    op.drop_column("drafts", "quality_passed")
    op.drop_column("ai_calls", "max_tokens")
    op.drop_column("ai_calls", "finish_reason")
    op.drop_column("ai_calls", "outcome")
