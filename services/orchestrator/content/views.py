"""What the content API answers with and takes: typed pages of keywords, clusters, ideas, tasks, drafts and
images, and the bodies of the edits."""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.orchestrator.web.types import INT64_MAX, SafeLine, SafeText
from shared.text import normalise

T = TypeVar("T")
ItemId = Annotated[int, Field(ge=1, le=INT64_MAX)]
KeywordIds = Annotated[list[ItemId], Field(min_length=1, max_length=10_000)]


def _visible_name(value: str) -> str:
    if not normalise(value):
        raise ValueError("a cluster name needs visible characters")
    if len(normalise(value)) > 200:
        raise ValueError("a cluster name is at most 200 characters once normalised")
    return value


ClusterName = Annotated[SafeLine, Field(min_length=1, max_length=200), AfterValidator(_visible_name)]

KeywordStatus = Literal["pending", "clustered", "disabled"]
KeywordSort = Literal["id", "keyword", "volume_desc", "difficulty_desc"]
DraftStatus = Literal["writing_images", "in_review", "approved", "rejected", "published", "superseded"]


class Paged(BaseModel, Generic[T]):
    total: int = Field(description="entries matching the filters, over all pages")
    page: int
    size: int
    items: list[T]


# ---------------------------------------------------------------- lists
class KeywordView(BaseModel):
    """A keyword with its place in the pipeline (status, cluster) and what the research tool said about it
    (issue 17: intent and parent keyword are columns, the other figures come from the `metrics` JSONB)."""

    id: int
    keyword: str
    volume: int | None
    difficulty: int | None
    intent: list[str] | None = Field(description="search intents, strongest first")
    parent_keyword: str | None = Field(description="Ahrefs' parent keyword")
    cpc: float | None = None
    currency: str | None = None
    competition: float | None = None
    competition_level: str | None = None
    trend: list[float] | None = None
    serp_features: list[str] | None = None
    clicks: int | None = None
    ctr: float | None = None
    position: float | None = None
    extra: dict[str, str] | None = Field(default=None, description="the tool's other columns (header → cell)")
    status: KeywordStatus = Field(description="pending (waits for clustering), clustered, or disabled")
    cluster_id: int | None
    cluster_name: str | None
    source: str
    created_at: AwareDatetime
    clustered_at: AwareDatetime | None
    disabled_at: AwareDatetime | None


class ClusterKeyword(BaseModel):
    id: int
    keyword: str
    volume: int | None


class ClusterView(BaseModel):
    id: int
    name: str
    description: str
    intent: str
    size: int = Field(description="keywords in the cluster (always equal to their count)")
    keywords: list[ClusterKeyword] = Field(description="its keywords, highest volume first (at most `keywords` asked)")
    ideas: int
    run_id: str | None
    created_at: AwareDatetime


class IdeaView(BaseModel):
    id: int
    cluster_id: int
    cluster_name: str
    title: str
    content_type: str
    intent: str
    primary_keyword: str
    secondary_keywords: list[str]
    target_words: int
    has_task: bool
    run_id: str | None
    created_at: AwareDatetime


class TaskView(BaseModel):
    id: int
    idea_id: int
    title: str
    draft_id: int | None = Field(description="the task's live draft")
    drafts: int = Field(description="drafts written for it (superseded ones included)")
    run_id: str | None
    created_at: AwareDatetime


class PublicationView(BaseModel):
    state: str
    remote_status: str | None
    url: str | None
    published_at: AwareDatetime | None
    last_error: str | None


class DraftSummary(BaseModel):
    id: int
    task_id: int
    title: str
    slug: str
    word_count: int
    target_words: int
    quality_score: int
    low_quality: bool
    status: DraftStatus
    decision: str | None
    note: str | None
    decided_at: AwareDatetime | None
    edited: bool = Field(description="a person changed its text (the model's original is version 1)")
    images: int
    image_prompts: int
    publication: PublicationView | None
    superseded_at: AwareDatetime | None
    run_id: str | None
    created_at: AwareDatetime


class ImageView(BaseModel):
    id: int
    draft_id: int
    placement: str
    alt_text: str
    caption: str
    mime: str
    width: int
    height: int
    size_bytes: int
    checksum_sha256: str
    url: str = Field(description="the file, for the same key (GET)")
    created_at: AwareDatetime


# ---------------------------------------------------------------- edits
class KeywordStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyword_ids: KeywordIds
    enabled: bool = Field(description="false: never clustered, and out of its cluster; true: pending again")


class KeywordStatusOut(BaseModel):
    changed: int
    keywords: list[KeywordView]
    clusters: list[ClusterView] = Field(description="clusters the disabled keywords left")


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ClusterName


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyword_ids: KeywordIds


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_cluster_id: ItemId = Field(description="the cluster whose keywords join this one; it is removed")


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyword_ids: KeywordIds
    name: ClusterName = Field(description="the new cluster's name (unique in the site)")


class ClusterEditOut(BaseModel):
    """The clusters an edit changed, as they are now; `removed` names a cluster that is gone."""

    clusters: list[ClusterView]
    removed: list[int] = Field(default_factory=list)
    emptied: list[int] = Field(
        default_factory=list, description="emptied clusters kept because ideas refer to them (size 0)"
    )


class DraftEditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[SafeLine, Field(min_length=1, max_length=300)] | None = None
    meta_title: Annotated[SafeLine, Field(max_length=60)] | None = None
    meta_description: Annotated[SafeLine, Field(max_length=160)] | None = None
    body_markdown: Annotated[SafeText, Field(min_length=1, max_length=200_000)] | None = None


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=1_000_000, description="1 is the model's original")


class DraftVersionView(BaseModel):
    version: int
    source: str = Field(description="model (what the writer wrote), edit, or restore")
    title: str
    meta_title: str
    meta_description: str
    body_markdown: str
    key_id: str | None
    created_at: AwareDatetime
