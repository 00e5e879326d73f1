"""Versioned message contracts shared by every service.

Each message carries `message_id`, `schema_version` and `occurred_at`; run-scoped messages also carry
`account_id`, `site_id`, `run_id`, `stage` and `attempt`. Messages are keyed by `site_id` so one site's
messages stay in order on one partition. A breaking change adds a new `schema_version` literal.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared import prompts
from shared.text import normalise


def new_message_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Stage(IntEnum):
    CLUSTER = 1
    IDEATE = 2
    TASKS = 3
    DRAFTS = 4
    IMAGE_PROMPTS = 5
    IMAGES = 6
    REVIEW = 7

    @property
    def label(self) -> str:
        return STAGE_LABELS[self]


STAGE_LABELS: dict[Stage, str] = {
    Stage.CLUSTER: "keywords → clusters",
    Stage.IDEATE: "clusters → ideas",
    Stage.TASKS: "ideas → tasks",
    Stage.DRAFTS: "tasks → drafts",
    Stage.IMAGE_PROMPTS: "drafts → image prompts",
    Stage.IMAGES: "prompts → images",
    Stage.REVIEW: "review gate",
}

WORKER_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s is not Stage.REVIEW)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: str = Field(default_factory=new_message_id, min_length=8, max_length=64)
    occurred_at: datetime = Field(default_factory=utcnow)


KeywordText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
BannedWord = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[^\r\n]+$")
]


Intent = Literal["informational", "navigational", "commercial", "transactional", "branded", "local"]
INTENTS: tuple[str, ...] = ("informational", "navigational", "commercial", "transactional", "branded", "local")
MetricLabel = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=r"^[^\x00-\x1f]+$")
]
MetricValue = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f]*$")]


class KeywordIn(BaseModel):
    """One keyword and what the research tool said about it. Everything but `keyword` is optional; the
    figures people pay Semrush/Ahrefs/Planner/Search Console for are kept, not dropped (issue 17)."""

    model_config = ConfigDict(extra="forbid")

    keyword: KeywordText
    volume: int | None = Field(default=None, ge=0, le=2_000_000_000)  # fits the 32-bit column
    difficulty: int | None = Field(default=None, ge=0, le=100)
    # Search intent(s), strongest first; the ideator's brief can take its search intent from them.
    intent: list[Intent] | None = Field(default=None, max_length=6)
    # Ahrefs' parent keyword: the topic this keyword ranks under; a grouping hint for the clusterer.
    parent_keyword: KeywordText | None = None
    cpc: float | None = Field(default=None, ge=0, le=1_000_000, description="cost per click")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="of cpc, ISO 4217")
    competition: float | None = Field(default=None, ge=0, le=1, description="0-1 (Semrush density, Planner index/100)")
    competition_level: Literal["low", "medium", "high"] | None = None
    trend: list[float] | None = Field(default=None, max_length=36, description="relative or monthly demand, oldest 1st")
    serp_features: list[MetricLabel] | None = Field(default=None, max_length=40)
    clicks: int | None = Field(default=None, ge=0, le=2_000_000_000)
    ctr: float | None = Field(default=None, ge=0, le=1)
    position: float | None = Field(default=None, ge=0, le=1000, description="average ranking position")
    # The tool's other columns (header → cell), so a paid-for figure without a field of its own survives too.
    extra: dict[MetricLabel, MetricValue] | None = Field(default=None, max_length=40)

    @field_validator("trend")
    @classmethod
    def _finite_trend(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not 0 <= v <= 2_000_000_000 for v in value):  # NaN fails both bounds
            raise ValueError("trend values must be numbers from 0 to 2,000,000,000")
        return value

    @field_validator("keyword")
    @classmethod
    def _normalised_fits(cls, value: str) -> str:
        # The dedup key is the normalised form, which can be longer (NFKC, casefold: "ß" → "ss").
        norm = normalise(value)
        if len(norm) > 200:
            raise ValueError("keyword is longer than 200 characters once normalised")
        if not norm:  # only zero-width/format characters: nothing a reader would see
            raise ValueError("keyword has no visible characters")
        return value

    def metrics(self) -> dict[str, object]:
        """The figures stored together (keywords.metrics, JSONB): only those the source gave."""
        return {name: value for name in KEYWORD_METRICS if (value := getattr(self, name)) is not None}


# KeywordIn fields kept in the keywords.metrics JSONB column; intent and parent_keyword have columns of their
# own (filtered on, and read by the ideator and the clusterer).
KEYWORD_METRICS: tuple[str, ...] = (
    "cpc", "currency", "competition", "competition_level", "trend", "serp_features", "clicks", "ctr", "position",
    "extra",
)  # fmt: skip


class KeywordBatchIngested(Message):
    """Upstream systems publish keyword batches for a site onto `contentline.keywords.ingest`."""

    schema_version: Literal[1] = 1
    # The account the producer acts for: a batch for a site of another account is dead-lettered (issue 9).
    account_id: str = Field(min_length=1, max_length=64)
    site_id: str = Field(min_length=1, max_length=64)
    source: str = Field(default="upstream", max_length=100)
    keywords: list[KeywordIn] = Field(min_length=1, max_length=10_000)
    # Start a run (trigger "event") once these keywords are in; additive field, so still version 1.
    start_run: bool = False


class StageOptions(BaseModel):
    """Per-site knobs a worker needs; the orchestrator resolves them when it releases a batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None (the default): the clusterer calibrates the decision from the site's own keywords (issue 10).
    # A number: a fixed raw-cosine threshold for this site, an explicit override for whoever wants one.
    similarity_threshold: float | None = Field(default=None, gt=0, le=1)
    min_cluster_size: int = Field(default=1, ge=1, le=1000)
    ideas_per_cluster: int = Field(default=1, ge=1, le=20)
    target_words: int = Field(default=900, ge=150, le=10_000)
    sections_per_image: int = Field(default=3, ge=1, le=50)
    image_size: str = Field(default="1024x1024", pattern=r"^\d{2,4}x\d{2,4}$")
    image_quality: Literal["low", "medium", "high"] = "low"
    language: str = Field(default="English", max_length=50)
    tone: str = Field(default="helpful, clear and practical", max_length=200)
    audience: str = Field(default="people searching the web for this topic", max_length=300)
    # Per-site voice (issue 5): applied to every prompt by shared.prompts.render.
    brand_notes: str = Field(default="", max_length=1000)
    banned_words: list[BannedWord] = Field(default_factory=list, max_length=100)
    prompt_templates: dict[str, str] = Field(
        default_factory=dict,
        description="Per-site overrides of shared/prompts/<name>.txt, keyed by template name",
    )

    @field_validator("prompt_templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, text in value.items():
            try:
                prompts.check_override(name, text)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return value


class StageCommand(Message):
    """The orchestrator asks a worker to process one batch of one stage. `message_id` is the command id."""

    schema_version: Literal[1] = 1
    account_id: str
    site_id: str
    run_id: str
    stage: Stage
    batch_seq: int = Field(ge=0)
    attempt: int = Field(default=1, ge=1)
    item_ids: list[int] = Field(min_length=1, max_length=10_000)
    options: StageOptions = Field(default_factory=StageOptions)


class ItemFailure(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: int
    reason: str = Field(max_length=2000)
    permanent: bool = True

    @field_validator("reason", mode="before")
    @classmethod
    def _bounded(cls, value: object) -> object:
        # A reason quotes what failed (a provider's error page, say): keep its start, never fail on length.
        return value[:1997] + "..." if isinstance(value, str) and len(value) > 2000 else value


class ImageUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: str
    quality: str
    count: int = Field(default=1, ge=0)


class Usage(BaseModel):
    """What the batch consumed, in the units the cost table prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    keywords_clustered: int = 0
    clusters_ideated: int = 0
    words_written: int = 0
    image_prompts: int = 0
    images: list[ImageUsage] = Field(default_factory=list)


class ResultStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


class StageResult(Message):
    """One per command: what a worker did with a batch, success or failure."""

    schema_version: Literal[1] = 1
    command_id: str
    account_id: str
    site_id: str
    run_id: str
    stage: Stage
    batch_seq: int
    attempt: int = 1
    status: ResultStatus
    items_in: int
    items_processed: int
    items_created: int
    items_skipped: int = 0  # already done by an earlier delivery: no model call, no charge
    failures: list[ItemFailure] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    worker: str = ""


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = (RunStatus.RUNNING, RunStatus.PAUSED)


class RunEvent(Message):
    """Run lifecycle notifications for observers (status changes, stage transitions)."""

    schema_version: Literal[1] = 1
    account_id: str
    site_id: str
    run_id: str
    stage: int
    status: RunStatus
    event: str
    detail: str = ""


class PublishedImage(BaseModel):
    """One generated image of a published article, by reference to the media store (no bytes on Kafka)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    placement: str
    alt_text: str
    caption: str
    path: str  # key in the media store (local files now; an S3-compatible store later)
    mime: str
    width: int
    height: int
    size_bytes: int
    checksum_sha256: str


class ArticlePublished(Message):
    """An approved draft a person published: everything a CMS connector needs to put it live.

    Written to the outbox in the transaction that records the decision, so exactly one event exists per
    published draft (delivered at least once; consumers drop duplicates by `message_id`).
    """

    schema_version: Literal[1] = 1
    site_id: str
    run_id: str | None
    draft_id: int
    title: str
    slug: str
    meta_title: str
    meta_description: str
    body_markdown: str
    body_html: str
    word_count: int
    quality_score: int
    images: list[PublishedImage]
    published_at: datetime


# ---------------------------------------------------------------- publishing to WordPress (issue 14)
PostStatus = Literal["publish", "draft", "pending", "private"]
TermName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class PublicationState(StrEnum):
    """Where the publisher is with a draft (its `publications` row)."""

    SCHEDULED = "scheduled"  # the publisher holds the command and waits to (re)try it (e.g. the site answered 503)
    PUBLISHING = "publishing"  # talking to WordPress now
    PUBLISHED = "published"
    FAILED = "failed"


class RemoteStatus(StrEnum):
    """A post's status on the WordPress side, as the publisher last saw it; `deleted` = the post is gone (404)."""

    PUBLISH = "publish"
    FUTURE = "future"
    DRAFT = "draft"
    PENDING = "pending"
    PRIVATE = "private"
    TRASH = "trash"
    DELETED = "deleted"


class PublishCommand(Message):
    """The orchestrator asks the publisher to put one approved draft on its site's WordPress.

    `message_id` is the command id. Keyed by `site_id`: one site's posts go out in order, one at a time.
    The publisher reads the draft, its images and the site's connection from the database, so the command
    stays small; a redelivered or repeated command for the same draft never makes a second post.
    """

    schema_version: Literal[1] = 1
    account_id: str = Field(min_length=1, max_length=64)
    site_id: str = Field(min_length=1, max_length=64)
    draft_id: int = Field(ge=1)
    run_id: str | None = Field(default=None, max_length=80)
    attempt: int = Field(default=1, ge=1)
    post_status: PostStatus | None = None  # None: the connection's default_post_status
    scheduled_for: datetime | None = None  # the slot it was due at; for the activity log only


class PublishResult(Message):
    """One per publish command: the draft is live (or in the requested status) on WordPress, or why it is not."""

    schema_version: Literal[1] = 1
    command_id: str
    account_id: str
    site_id: str
    draft_id: int
    run_id: str | None = None
    attempt: int = 1
    state: Literal[PublicationState.PUBLISHED, PublicationState.FAILED]
    remote_post_id: int | None = None
    url: str | None = None
    remote_status: RemoteStatus | None = None
    reason: str = Field(default="", max_length=2000)  # for a failure: WordPress's own words where it gave some
    permanent: bool = True  # False: gave up on a transient problem (site down); publishing again may work
    already_published: bool = False  # an earlier command had published it: nothing was sent to WordPress
    media_uploaded: int = 0
    media_reused: int = 0  # found in WordPress's media library from an earlier, interrupted attempt
    notes: list[str] = Field(default_factory=list)  # e.g. "SEO title and description skipped: ..."
    seconds: float = 0.0
    worker: str = ""

    @field_validator("reason", mode="before")
    @classmethod
    def _bounded(cls, value: object) -> object:
        return value[:1997] + "..." if isinstance(value, str) and len(value) > 2000 else value


class PublicationStatusChanged(Message):
    """The status sync saw a published post change on WordPress (status or URL), or disappear (`deleted`)."""

    schema_version: Literal[1] = 1
    account_id: str
    site_id: str
    draft_id: int
    remote_post_id: int
    previous_status: RemoteStatus | None
    remote_status: RemoteStatus
    previous_url: str | None = None
    url: str | None = None


class CategoryMapping(BaseModel):
    """`wordpress_connections.category_mapping`: which WordPress categories a post gets (created when missing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: list[TermName] = Field(default_factory=list, max_length=20)  # every post of the site
    by_cluster: dict[str, list[TermName]] = Field(default_factory=dict)  # the draft's cluster name → categories
    cluster_as_category: bool = True  # a cluster without a mapping becomes a category of its own name


class TagMapping(BaseModel):
    """`wordpress_connections.tag_mapping`: which tags a post gets (created when missing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_keywords: bool = True  # the idea's primary and secondary keywords
    rename: dict[str, str] = Field(default_factory=dict)  # keyword → tag; "" leaves that keyword out
    extra: list[TermName] = Field(default_factory=list, max_length=20)
    max_tags: int = Field(default=10, ge=0, le=50)
