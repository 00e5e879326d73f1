"""SQLAlchemy models. One database; each table has one owning service (noted per class).

Reads across tables are fine (the orchestrator counts pending work everywhere); writes stay with the
owner. Money is `Numeric(18, 4)` so fractional credits never drift.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Credits = Numeric(18, 4)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


# ---------------------------------------------------------------- orchestrator: accounts and sites
class Account(Base):
    __tablename__ = "accounts"
    # The balance can never go below zero, whatever the code above it does.
    __table_args__ = (CheckConstraint("credit_balance >= 0", name="balance_not_negative"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(40), default="starter", server_default="starter")
    credit_balance: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    monthly_credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    created_at: Mapped[datetime] = _now()


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str | None] = mapped_column(String(253))
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """An account's API key. Only the SHA-256 of the whole key is stored; `id` is its public prefix."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GlobalBudgetShare(Base):
    """The operator's default budget share per AI function (percent of a run's credit cap); sites may override."""

    __tablename__ = "budget_shares"
    __table_args__ = (CheckConstraint("percent BETWEEN 0 AND 100", name="percent_range"),)
    function: Mapped[str] = mapped_column(String(40), primary_key=True)
    percent: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = _now()


class SiteConfigRow(Base):
    """The site's automation config (validated JSON, see services.orchestrator.config) + schedule state."""

    __tablename__ = "site_configs"
    __table_args__ = (Index("ix_site_configs_due", "next_run_at", postgresql_where=text("is_enabled")),)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column()
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_schedule_note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


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
    created_at: Mapped[datetime] = _now()
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
    created_at: Mapped[datetime] = _now()
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
    updated_at: Mapped[datetime] = _now()


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
    created_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------- writer
class WriterTask(Base):
    __tablename__ = "writer_tasks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    idea_id: Mapped[int] = mapped_column(ForeignKey("ideas.id"), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(80))
    title: Mapped[str] = mapped_column(String(300))
    brief: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _now()


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
    created_at: Mapped[datetime] = _now()
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
    created_at: Mapped[datetime] = _now()


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
    created_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------- orchestrator: runs, review, money
class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # One active run per site, enforced by the database: running and paused both count.
        Index(
            "uq_runs_one_active_per_site",
            "site_id",
            unique=True,
            postgresql_where=text("status IN ('running', 'paused')"),
        ),
        Index("ix_runs_site_started", "site_id", "started_at"),
    )
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    trigger: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    initial_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total_credits_used: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    estimated_credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0), server_default="0")
    # Held back from the account's available credits while the run is active (estimate + margin).
    reserved_credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0), server_default="0")
    stopped_reason: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = _now()
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StageBatch(Base):
    """The batch plan of a stage; `id` is the command id (= the command message's `message_id`)."""

    __tablename__ = "stage_batches"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "seq", name="uq_stage_batches_run_stage_seq"),
        Index("ix_stage_batches_run_stage_status", "run_id", "stage", "status"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    stage: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    item_ids: Mapped[list[Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|released|done|failed|cancelled
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    estimate: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0), server_default="0")
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class StageRunResult(Base):
    __tablename__ = "stage_results"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # running|completed|skipped|stopped|failed
    items_in: Mapped[int] = mapped_column(Integer, default=0)
    items_processed: Mapped[int] = mapped_column(Integer, default=0)
    items_created: Mapped[int] = mapped_column(Integer, default=0)
    items_skipped: Mapped[int] = mapped_column(Integer, default=0)
    items_failed: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[list[Any]] = mapped_column(default=list)
    batches_total: Mapped[int] = mapped_column(Integer, default=0)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    partial: Mapped[bool] = mapped_column(Boolean, default=False)
    stopped_reason: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CreditLedger(Base):
    """Append-only. A debit is keyed by the command id, so a replayed result never charges twice."""

    __tablename__ = "credit_ledger"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # debit|grant|adjust
    amount: Mapped[Decimal] = mapped_column(Credits)  # signed: debits negative
    balance_after: Mapped[Decimal] = mapped_column(Credits)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _now()


class ActivityLog(Base):
    __tablename__ = "activity_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[int | None] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class ReviewDecision(Base):
    __tablename__ = "review_decisions"
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(20))  # approved|rejected|published
    note: Mapped[str] = mapped_column(Text, default="")
    # person (the review API) or auto (auto-approval at the end of a run; the note says why).
    decided_by: Mapped[str] = mapped_column(String(20), default="person", server_default="person")
    decided_at: Mapped[datetime] = _now()


class DraftVersion(Base):
    """A draft's text before a person's edit; version 1 is what the model wrote (issue 16)."""

    __tablename__ = "draft_versions"
    __table_args__ = (UniqueConstraint("draft_id", "version", name="uq_draft_versions_draft_version"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))  # model|edit|restore
    title: Mapped[str] = mapped_column(String(300))
    meta_title: Mapped[str] = mapped_column(String(60))
    meta_description: Mapped[str] = mapped_column(String(160))
    body_markdown: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(16))  # the API key of the person who edited
    created_at: Mapped[datetime] = _now()


class DashboardSession(Base):
    """A browser signed in to the dashboard with an API key; only the SHA-256 of the cookie is stored."""

    __tablename__ = "dashboard_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class FailingItem(Base):
    """Orchestrator (sites domain): an item whose last run(s) failed it. Its streak counts runs in a row that
    failed it (a success deletes the row); at `park_after_failed_runs` the item is parked: no stage takes it
    in again until a person un-parks it. Stage 4's items are writer tasks, so a draft the quality gate held
    back counts against its task (issue 11)."""

    __tablename__ = "failing_items"
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    failed_runs: Mapped[int] = mapped_column(Integer, default=1)
    last_run_id: Mapped[str] = mapped_column(String(80))
    reasons: Mapped[list[Any]] = mapped_column(default=list)  # the latest few, newest last
    first_failed_at: Mapped[datetime] = _now()
    last_failed_at: Mapped[datetime] = _now()
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- every service: its own rows
class AiCall(Base):
    """One row per model call: the usage record that credits are derived from."""

    __tablename__ = "ai_calls"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    service: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    item_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # chat|embeddings|image
    model: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(60))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text)
    ms: Mapped[int] = mapped_column(Integer, default=0)
    # ok, or what went wrong (shared.ai.FailureKind: cut_off, invalid_json, timeout, ...); failed requests
    # keep their tokens, so what re-asks cost is visible.
    outcome: Mapped[str] = mapped_column(String(30), default="ok", server_default="ok")
    finish_reason: Mapped[str | None] = mapped_column(String(30))
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()


class InboxMessage(Base):
    """Idempotent consumers: a row per (consumer, message_id), written with the work's results."""

    __tablename__ = "inbox"
    consumer: Mapped[str] = mapped_column(String(60), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = _now()
    # What a worker answered (the StageResult payload): a command asked again gets the same message back.
    result: Mapped[dict[str, Any] | None] = mapped_column()


class DeliveryAttempt(Base):
    """How often a consumer has started on a message that has not finished yet: survives restarts and
    rebalances, so a message that keeps failing (or keeps killing its process) is given up on for good."""

    __tablename__ = "delivery_attempts"
    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()


class OutboxMessage(Base):
    """Transactional outbox: written with the result it announces, relayed to Kafka by its producer."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "producer",
            "id",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index("ix_outbox_parked", "id", postgresql_where=text("parked_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    producer: Mapped[str] = mapped_column(String(60))
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A row the broker keeps refusing (e.g. too large) is parked, not retried forever: the relay moves on
    # and the row stays here, listed by the orchestrator's API, until an operator retries it.
    send_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- orchestrator: WordPress connections (issue 14)
class WordPressConnection(Base):
    """A site's WordPress: written by the orchestrator's API, read by the publisher.

    The application password is stored Fernet-encrypted (shared.secrets, key CONTENTLINE_SECRET_KEY) or as a
    reference to where it lives (`env:NAME`, `file:/path`); exactly one of the two. Never returned or logged.
    """

    __tablename__ = "wordpress_connections"
    __table_args__ = (
        CheckConstraint("(app_password_encrypted IS NULL) <> (app_password_ref IS NULL)", name="one_password_source"),
        CheckConstraint("default_post_status IN ('publish', 'draft', 'pending', 'private')", name="post_status"),
    )
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(500))
    username: Mapped[str] = mapped_column(String(200))
    app_password_encrypted: Mapped[str | None] = mapped_column(Text)
    app_password_ref: Mapped[str | None] = mapped_column(String(500))
    default_post_status: Mapped[str] = mapped_column(String(20), default="publish", server_default="publish")
    category_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'::jsonb"))
    tag_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------- webhooks (issue 15)
class WebhookEndpoint(Base):
    """An account's receiver of webhook events (services/webhooks).

    The signing secret is needed in plaintext to sign, so it is stored Fernet-encrypted under
    CONTENTLINE_SECRET_KEY, never hashed. After a rotation the previous secret signs too (a second signature
    in the same header) until `previous_secret_expires_at`, so receivers switch over without dropping events.
    """

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(300), default="")
    event_types: Mapped[list[Any]] = mapped_column(default=list)  # names from services.webhooks.events
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)  # e.g. the receiver answered 410 Gone
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class PublishingSettingsRow(Base):
    """A site's publishing settings (validated JSON, services.orchestrator.publishing.settings); created with
    the defaults on first use. Locking this row serialises slot assignment for its site across replicas."""

    __tablename__ = "publishing_settings"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = _now()


class ScheduledPublication(Base):
    """An approved draft in its site's publishing schedule: when it is due, whether it was handed to the
    publisher (once: `command_id`), what came of it, or why it has no slot (`reason`)."""

    __tablename__ = "publishing_schedule"
    __table_args__ = (
        CheckConstraint(
            "state IN ('scheduled', 'unscheduled', 'publishing', 'published', 'failed')", name="state"
        ),
        CheckConstraint("state <> 'scheduled' OR scheduled_publish_at IS NOT NULL", name="scheduled_has_slot"),
        # A slot is never given twice, whatever the replicas do (the site's lock is the first line).
        Index(
            "uq_publishing_schedule_site_slot",
            "site_id",
            "scheduled_publish_at",
            unique=True,
            postgresql_where=text("state = 'scheduled'"),
        ),
        # The ticker's work lists: due drafts, and drafts waiting for a slot to be tried again.
        Index("ix_publishing_schedule_due", "scheduled_publish_at", postgresql_where=text("state = 'scheduled'")),
        Index("ix_publishing_schedule_retry", "retry_at", postgresql_where=text("state = 'unscheduled'")),
        Index("ix_publishing_schedule_site_state", "site_id", "state"),
    )
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    run_id: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(20))
    scheduled_publish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_by: Mapped[str] = mapped_column(String(20), default="auto")  # auto (the mode) | person
    reason: Mapped[str | None] = mapped_column(Text)  # why unscheduled, or why publishing failed
    reason_code: Mapped[str | None] = mapped_column(String(30))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # unscheduled: next try
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    command_id: Mapped[str | None] = mapped_column(String(64))  # the PublishCommand that holds it now
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # commands sent
    handed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    remote_post_id: Mapped[int | None] = mapped_column(BigInteger)
    remote_status: Mapped[str | None] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------- publisher
class Publication(Base):
    """One per draft sent to WordPress: the remote post and where publishing stands (PublicationState)."""

    __tablename__ = "publications"
    __table_args__ = (
        CheckConstraint("state IN ('scheduled', 'publishing', 'published', 'failed')", name="state"),
        Index("ix_publications_site_state", "site_id", "state"),
        # The status sync's work list: published posts not known to be gone, by when they are due.
        Index(
            "ix_publications_sync_due",
            "next_sync_at",
            postgresql_where=text("state = 'published' AND remote_status IS DISTINCT FROM 'deleted'"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), unique=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    run_id: Mapped[str | None] = mapped_column(String(80))
    command_id: Mapped[str | None] = mapped_column(String(64))  # the command that last worked on it
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    remote_post_id: Mapped[int | None] = mapped_column(BigInteger)
    remote_status: Mapped[str | None] = mapped_column(String(20))  # RemoteStatus
    url: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PublicationMedia(Base):
    """An image of a publication uploaded to the site's media library; recorded right after each upload."""

    __tablename__ = "publication_media"
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    remote_media_id: Mapped[int] = mapped_column(BigInteger)
    source_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
class WebhookDelivery(Base):
    """One event for one endpoint, retried until delivered or dead. Doubles as the endpoint's delivery log.

    status: pending (no attempt yet) → failed (last attempt failed, next one at `next_attempt_at`) → delivered
    (a 2xx answer) or dead (attempts exhausted, or 410 Gone). (endpoint_id, event_id) is unique: a redelivered
    source event never makes a second delivery.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed', 'dead')", name="status_known"),
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'failed')"),
        ),
        Index("ix_webhook_deliveries_endpoint_log", "endpoint_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header: the same on every attempt
    event_type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- rules (issue 15)
class Rule(Base):
    """An automation rule of a site (IGNY8 seed 003): on a trigger, if every condition holds, run the actions.

    `executions_today` counts executions on the local date `executions_day` (the site's time zone); a rule's row
    is locked while an execution is decided, so the daily limit holds with any number of replicas.
    """

    __tablename__ = "rules"
    __table_args__ = (
        CheckConstraint("max_executions_per_day >= 0", name="max_executions_not_negative"),
        CheckConstraint("credit_limit_per_execution >= 0", name="credit_limit_not_negative"),
        Index("ix_rules_site_trigger", "site_id", "trigger"),
        Index("ix_rules_schedule_due", "next_fire_at", postgresql_where=text("is_active AND trigger = 'schedule'")),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    trigger: Mapped[str] = mapped_column(String(40))
    conditions: Mapped[list[Any]] = mapped_column(default=list)  # [{"field", "operator", "value"}]
    actions: Mapped[list[Any]] = mapped_column(default=list)  # [{"type", ...parameters}]
    schedule_cron: Mapped[str | None] = mapped_column(String(120))
    schedule_timezone: Mapped[str | None] = mapped_column(String(64))
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # schedule rules only
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    max_executions_per_day: Mapped[int] = mapped_column(Integer, default=10)
    credit_limit_per_execution: Mapped[Decimal] = mapped_column(Credits, default=Decimal(100))
    executions_today: Mapped[int] = mapped_column(Integer, default=0)
    executions_day: Mapped[date | None] = mapped_column(Date)
    last_executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ScheduledTask(Base):
    """One execution of a rule: pending → running (its targeted run is under way) → completed | failed, or
    skipped with the reason. (rule_id, event_key) is unique: an event (or a cron instant) executes a rule once.
    """

    __tablename__ = "scheduled_tasks"
    __table_args__ = (
        UniqueConstraint("rule_id", "event_key", name="uq_scheduled_tasks_rule_event"),
        CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'skipped')", name="status_known"
        ),
        Index("ix_scheduled_tasks_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_scheduled_tasks_running", "id", postgresql_where=text("status = 'running'")),
        Index("ix_scheduled_tasks_site_log", "site_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    rule_id: Mapped[str] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(40))  # schedule | manual | the entity event type
    # The entity event's message id, "cron:<instant>" for a schedule, None for "execute now" (never deduplicated).
    event_key: Mapped[str | None] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the event's entity fields
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_message: Mapped[str | None] = mapped_column(Text)
    credits_used: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    run_id: Mapped[str | None] = mapped_column(String(80))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
