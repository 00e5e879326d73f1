"""What the publishing API takes and answers: settings, a draft's place in the schedule, the queue, the
WordPress connection (never its password) and the connection test."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from services.orchestrator.publishing.settings import PublishingSettings
from services.orchestrator.web.types import SafeLine
from shared.contracts import CategoryMapping, PostStatus, TagMapping
from shared.db.models import ScheduledPublication, WordPressConnection
from shared.secrets import SecretError, check_reference

ScheduleState = Literal["scheduled", "unscheduled", "publishing", "published", "failed"]


class PublishingView(BaseModel):
    """A draft's place in its site's publishing schedule."""

    state: ScheduleState
    scheduled_publish_at: AwareDatetime | None = Field(description="when it is (or was) due, UTC")
    scheduled_by: str = Field(description="auto (the site's scheduling mode) or person")
    reason: str | None = Field(description="why it has no slot, or why publishing failed")
    reason_code: str | None = Field(
        description="queue_full, no_free_slot, no_allowed_day, no_connection, auto_publish_off, held, publish_failed"
    )
    next_try_at: AwareDatetime | None = Field(description="unscheduled: when a slot is looked for again")
    attempts: int = Field(description="publish commands sent so far")
    remote_post_id: int | None
    remote_status: str | None = Field(description="WordPress's status as last seen: publish, draft, trash, deleted...")
    url: str | None
    published_at: AwareDatetime | None
    updated_at: AwareDatetime

    @classmethod
    def of(cls, row: ScheduledPublication) -> PublishingView:
        return cls(
            state=row.state,  # the table's check constraint holds it to ScheduleState (validated here too)
            scheduled_publish_at=row.scheduled_publish_at,
            scheduled_by=row.scheduled_by,
            reason=row.reason,
            reason_code=row.reason_code,
            next_try_at=row.retry_at,
            attempts=row.attempts,
            remote_post_id=row.remote_post_id,
            remote_status=row.remote_status,
            url=row.url,
            published_at=row.published_at,
            updated_at=row.updated_at,
        )


class QueueEntry(PublishingView):
    draft_id: int
    run_id: str | None
    title: str

    @classmethod
    def entry(cls, row: ScheduledPublication, title: str) -> QueueEntry:
        return cls(**PublishingView.of(row).model_dump(), draft_id=row.draft_id, run_id=row.run_id, title=title)


class DraftPublishing(BaseModel):
    """The answer of a person's schedule action."""

    draft_id: int
    site_id: str
    publishing: PublishingView


class SettingsOut(BaseModel):
    site_id: str
    timezone: str = Field(description="the site config's time zone: every time here is a wall-clock time in it")
    settings: PublishingSettings
    queued: int = Field(description="drafts waiting in the schedule now (at most max_scheduled_queue)")
    updated_at: AwareDatetime


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: AwareDatetime | None = Field(
        default=None, description="when to publish (with its UTC offset); null: the next free slot of the site's mode"
    )


# ---------------------------------------------------------------------- WordPress connection
def _check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// address of the WordPress site")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; give username and app_password")
    if parts.query or parts.fragment:
        raise ValueError("must be the site's address without a query or fragment")
    return value.rstrip("/")


class ConnectionIn(BaseModel):
    """Exactly one of `app_password` (stored encrypted) and `app_password_ref` (`env:NAME` or `file:/path`)."""

    model_config = ConfigDict(extra="forbid")

    base_url: Annotated[SafeLine, Field(min_length=8, max_length=500)]
    username: Annotated[SafeLine, Field(min_length=1, max_length=200)]
    app_password: SecretStr | None = Field(
        default=None, max_length=200, description="a WordPress application password; write-only, stored encrypted"
    )
    app_password_ref: Annotated[SafeLine | None, Field(max_length=500)] = Field(
        default=None, description="where the password lives instead: env:NAME or file:/absolute/path"
    )
    default_post_status: PostStatus = "publish"
    category_mapping: CategoryMapping = Field(default_factory=CategoryMapping)
    tag_mapping: TagMapping = Field(default_factory=TagMapping)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_base_url(value)

    @field_validator("app_password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (not value.get_secret_value().strip() or "\x00" in value.get_secret_value()):
            raise ValueError("must not be empty")  # never echo the value itself
        return value

    @field_validator("app_password_ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_reference(value)
        except SecretError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_source(self) -> ConnectionIn:
        if (self.app_password is None) == (self.app_password_ref is None):
            raise ValueError("give exactly one of app_password and app_password_ref")
        return self


class ConnectionView(BaseModel):
    site_id: str
    base_url: str
    username: str
    password: Literal["encrypted", "reference"] = Field(description="how the password is kept; never the password")
    app_password_ref: str | None
    default_post_status: str
    category_mapping: dict[str, Any]
    tag_mapping: dict[str, Any]
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @classmethod
    def of(cls, row: WordPressConnection) -> ConnectionView:
        return cls(
            site_id=row.site_id,
            base_url=row.base_url,
            username=row.username,
            password="encrypted" if row.app_password_encrypted else "reference",
            app_password_ref=row.app_password_ref,
            default_post_status=row.default_post_status,
            category_mapping=dict(row.category_mapping),
            tag_mapping=dict(row.tag_mapping),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ConnectionTestView(BaseModel):
    site_id: str
    ok: bool
    problem: str = Field(description="what is wrong, in one line; empty when ok")
    site_name: str
    user: str
    roles: list[str]
    marker_plugin: bool = Field(description="the contentline mu-plugin is installed (duplicate-proof retries)")
    seo_fields: bool = Field(description="Yoast SEO or Rank Math title and description fields are exposed")
    notes: list[str]
