"""What the stages make: keywords, embeddings, clusters, ideas, writer tasks, drafts, image prompts, images."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, now_column


# ---------------------------------------------------------------- orchestrator (import) + clusterer (assignment)
class Keyword(Base):
    """Rows are created by the orchestrator's import; `cluster_id`/`clustered_at` belong to the clusterer."""

    __tablename__ = "keywords"
    __table_args__ = (
        UniqueConstraint("site_id", "keyword_norm", name="uq_keywords_site_norm"),
        Index("ix_keywords_site_pending", "site_id", "id", postgresql_where=text("cluster_id IS NULL")),
        # Filters of the keyword views (issue 17): by intent (array containment) and by parent keyword.
        Index("ix_keywords_intent", "intent", postgresql_using="gin"),
        Index(
            "ix_keywords_site_parent",
            "site_id",
            text("lower(parent_keyword)"),
            postgresql_where=text("parent_keyword IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    keyword: Mapped[str] = mapped_column(String(200))
    keyword_norm: Mapped[str] = mapped_column(String(200))
    volume: Mapped[int | None] = mapped_column(Integer)
    difficulty: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(100), default="api")
    # What the research tool said (issue 17): intents strongest first, Ahrefs' parent keyword, and the other
    # figures (CPC, competition, trend, SERP features, clicks, CTR, position, other columns) as
    # shared.contracts.KeywordIn names them.
    intent: Mapped[list[str] | None] = mapped_column(ARRAY(String(20)))
    parent_keyword: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = now_column()
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), index=True)
    clustered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Orchestrator (content edits): a disabled keyword is never clustered and leaves its cluster.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- clusterer
class KeywordEmbedding(Base):
    __tablename__ = "keyword_embeddings"
    keyword_id: Mapped[int] = mapped_column(ForeignKey("keywords.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("site_id", "name_norm", name="uq_clusters_site_name"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    name_norm: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    intent: Mapped[str] = mapped_column(String(20))
    # float32 mean of the members' raw vectors (issue 10: a mean, so it can be centred on the site's mean;
    # rows from before are L2-normalised, and rebuilt from their members on the first batch after the upgrade)
    centroid: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = now_column()
    # The embedding model whose vectors the centroid averages; NULL for rows from before issue 10.
    embedding_model: Mapped[str | None] = mapped_column(String(100))


class ClusteringSpace(Base):
    """A site's keyword vectors of one embedding model: running sum and count (so the mean the clusterer
    centres on), and the similarity threshold calibrated from them (services/clusterer/calibration.py)."""

    __tablename__ = "clustering_spaces"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    embedding_model: Mapped[str] = mapped_column(String(100), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    keyword_count: Mapped[int] = mapped_column(BigInteger, default=0)
    vector_sum: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian, `dim` values
    threshold: Mapped[float | None] = mapped_column(Float)  # cosine in the centred view; NULL until calibrated
    calibrated_count: Mapped[int] = mapped_column(BigInteger, default=0)  # keyword_count when calibrated
    calibration: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the figures behind the threshold
    updated_at: Mapped[datetime] = now_column()


# ---------------------------------------------------------------- ideator
class Idea(Base):
    __tablename__ = "ideas"
    __table_args__ = (UniqueConstraint("cluster_id", "seq", name="uq_ideas_cluster_seq"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    seq: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(40))
    intent: Mapped[str] = mapped_column(String(20))
    primary_keyword: Mapped[str] = mapped_column(String(200))
    secondary_keywords: Mapped[list[Any]] = mapped_column(default=list)
    outline: Mapped[list[Any]] = mapped_column(default=list)  # [{"level": 2|3, "heading": str}]
    target_words: Mapped[int] = mapped_column(Integer)
    brief: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()


# ---------------------------------------------------------------- writer
class WriterTask(Base):
    __tablename__ = "writer_tasks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    idea_id: Mapped[int] = mapped_column(ForeignKey("ideas.id"), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    title: Mapped[str] = mapped_column(String(300))
    brief: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = now_column()


class Draft(Base):
    """Written by the writer. A person's edit before the decision (orchestrator, review domain) rewrites the
    text columns and keeps the text before it in `draft_versions`; regenerating a rejected draft sets
    `superseded_at` (also the orchestrator's) and the writer then writes the task's next draft."""

    __tablename__ = "drafts"
    __table_args__ = (
        # One live draft per task; superseded ones stay as history.
        Index("uq_drafts_live_task", "task_id", unique=True, postgresql_where=text("superseded_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("writer_tasks.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    title: Mapped[str] = mapped_column(String(300))
    slug: Mapped[str] = mapped_column(String(300))
    meta_title: Mapped[str] = mapped_column(String(60))
    meta_description: Mapped[str] = mapped_column(String(160))
    body_markdown: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    word_count: Mapped[int] = mapped_column(Integer)
    target_words: Mapped[int] = mapped_column(Integer)
    quality_score: Mapped[int] = mapped_column(Integer)
    quality_notes: Mapped[list[Any]] = mapped_column(default=list)
    # services.writer.quality's verdict: False when a blocking defect (placeholders, empty or repeated
    # sections, degenerate headings, length far off) or a score under the floor holds the draft back.
    quality_passed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = now_column()
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- imager
class ImagePrompt(Base):
    __tablename__ = "image_prompts"
    __table_args__ = (UniqueConstraint("draft_id", "position", name="uq_image_prompts_draft_position"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(Integer)
    placement: Mapped[str] = mapped_column(String(100))
    prompt: Mapped[str] = mapped_column(Text)
    alt_text: Mapped[str] = mapped_column(String(300))
    caption: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = now_column()


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("image_prompts.id"), unique=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    path: Mapped[str] = mapped_column(String(500))
    checksum_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(50))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = now_column()
