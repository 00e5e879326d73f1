"""per-site embedding statistics for self-calibrating clustering (issue 10)

- `clustering_spaces`: per site and embedding model, the running sum and count of the keyword vectors (the
  mean the clusterer centres on) and the threshold calibrated from them. Owned by the clusterer.
- `clusters.embedding_model`: which model's vectors a centroid averages. NULL marks rows from before this
  revision; the clusterer rebuilds them from their members' embeddings (and re-embeds with the site's current
  model) on its first batch for the site, and from then on stores centroids as raw member means.
- Site configs that carry the former default `options.similarity_threshold = 0.5` get null ("calibrate
  from the data"): 0.5 was never chosen by anyone, it was what every site got. A site that really wants a
  fixed threshold sets it again (any value, 0.5 included, is then an explicit override). Downgrade puts 0.5
  back where the value is null, and turns centroids back into unit vectors (what the code before expects).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clustering_spaces",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("embedding_model", sa.String(length=100), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("keyword_count", sa.BigInteger(), nullable=False),
        sa.Column("vector_sum", sa.LargeBinary(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("calibrated_count", sa.BigInteger(), nullable=False),
        sa.Column("calibration", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_clustering_spaces_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "embedding_model", name=op.f("pk_clustering_spaces")),
    )
    op.add_column("clusters", sa.Column("embedding_model", sa.String(length=100), nullable=True))
    op.execute(
        """
        UPDATE site_configs
           SET config = jsonb_set(config, '{options,similarity_threshold}', 'null'::jsonb)
         WHERE config #>> '{options,similarity_threshold}' = '0.5'
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE site_configs
           SET config = jsonb_set(config, '{options,similarity_threshold}', '0.5'::jsonb)
         WHERE config #> '{options,similarity_threshold}' = 'null'::jsonb
        """
    )
    bind = op.get_bind()
    for cluster_id, centroid in bind.execute(sa.text("SELECT id, centroid FROM clusters")).all():
        v = np.frombuffer(centroid, dtype="<f4")
        unit = (v / max(float(np.linalg.norm(v)), 1e-12)).astype("<f4")
        bind.execute(sa.text("UPDATE clusters SET centroid = :c WHERE id = :i"), {"c": unit.tobytes(), "i": cluster_id})
    op.drop_column("clusters", "embedding_model")
    op.drop_table("clustering_spaces")
