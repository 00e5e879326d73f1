"""a run's estimate revised after clustering (issue 10)

A first run cannot know how many clusters its keywords make, so its start estimate errs high (the seed assumes
4 keywords per cluster). Once stage 1 has made the clusters, the rest of the run is estimated again from them;
`revised_estimate` holds that estimate (NULL until then, and for runs whose stage 1 had nothing to do).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("revised_estimate", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "revised_estimate")
