"""AI providers: call usage of failed tries, per-function settings (issues 10, 11)

ai_calls gains what a request came to (outcome: ok or the failure's name), the provider's finish_reason and
the output budget sent, so the tokens of cut-off and invalid replies are visible per call. drafts gain the
quality gate's verdict (quality_passed) for whoever holds low-quality drafts back from images.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ai_calls", sa.Column("outcome", sa.String(length=30), server_default="ok", nullable=False))
    op.add_column("ai_calls", sa.Column("finish_reason", sa.String(length=30), nullable=True))
    op.add_column("ai_calls", sa.Column("max_tokens", sa.Integer(), nullable=True))
    op.add_column("drafts", sa.Column("quality_passed", sa.Boolean(), server_default=sa.text("true"), nullable=False))


def downgrade() -> None:
    op.drop_column("drafts", "quality_passed")
    op.drop_column("ai_calls", "max_tokens")
    op.drop_column("ai_calls", "finish_reason")
    op.drop_column("ai_calls", "outcome")
