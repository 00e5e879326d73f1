"""keyword import extra columns, operator tooling (issue 17)

The figures of the keyword research tools: `intent` (text[], GIN-indexed for "keywords with intent X") and
`parent_keyword` (indexed per site, case-insensitively) as columns, because views filter on them and the
ideator and clusterer read them; everything else (CPC, currency, competition, trend, SERP features, clicks,
CTR, position, other columns) in one JSONB `metrics` column: tool-specific, shown, never filtered in SQL.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("keywords", sa.Column("intent", postgresql.ARRAY(sa.String(length=20)), nullable=True))
    op.add_column("keywords", sa.Column("parent_keyword", sa.String(length=200), nullable=True))
    op.add_column(
        "keywords",
        sa.Column("metrics", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.create_index("ix_keywords_intent", "keywords", ["intent"], postgresql_using="gin")
    op.create_index(
        "ix_keywords_site_parent",
        "keywords",
        ["site_id", sa.text("lower(parent_keyword)")],
        postgresql_where=sa.text("parent_keyword IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_keywords_site_parent", table_name="keywords")
    op.drop_index("ix_keywords_intent", table_name="keywords")
    op.drop_column("keywords", "metrics")
    op.drop_column("keywords", "parent_keyword")
    op.drop_column("keywords", "intent")
