"""AI providers: call usage of failed tries, per-function settings (issues 10, 11)

A slot reserved so that work on several issues can land in any order without re-chaining Alembic.
Until its issue lands it changes nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
