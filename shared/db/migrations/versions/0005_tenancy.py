"""accounts & API keys, tenancy scoping, operator grants (issue 9)

API keys (only their SHA-256 stored) and the global budget shares, which the operator changes for every
replica at once. Tenancy itself needs no new columns: every customer row reaches its account through
`sites.account_id` (runs and the ledger carry `account_id` themselves).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_SHARES = {"clustering": 15, "ideas": 10, "content": 40, "image_prompts": 5, "images": 30}


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_api_keys_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"], unique=False)
    shares = op.create_table(
        "budget_shares",
        sa.Column("function", sa.String(length=40), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("percent BETWEEN 0 AND 100", name=op.f("ck_budget_shares_percent_range")),
        sa.PrimaryKeyConstraint("function", name=op.f("pk_budget_shares")),
    )
    op.bulk_insert(shares, [{"function": k, "percent": v} for k, v in DEFAULT_SHARES.items()])


def downgrade() -> None:
    op.drop_table("budget_shares")
    op.drop_index(op.f("ix_api_keys_account_id"), table_name="api_keys")
    op.drop_table("api_keys")
