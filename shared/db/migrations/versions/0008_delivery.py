"""delivery core: stored results for re-asked commands, worker concurrency (issues 12, 13)

A worker keeps the result it published with its inbox row, so a command that is asked again (same command
id, after a silence timeout or a redelivery) is answered with the same result message instead of being
skipped silently or worked again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: rows of consumers that answer nothing (the orchestrator's) and rows written before this.
    op.add_column("inbox", sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("inbox", "result")
