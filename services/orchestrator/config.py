"""Per-site automation configuration: schedule, batching, delays, stage switches, limits, budget shares.

One row per site, created lazily with these defaults. `SiteConfigPatch` validates API updates (unknown
fields, negative or absurd values, bad time zones → 422 naming the field); `RunPlan` is what a run
freezes at start, so a config change never alters a run in flight.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts import StageOptions

Frequency = Literal["daily", "weekly", "monthly"]
STAGES = (1, 2, 3, 4, 5, 6)
DEFAULT_BATCH_SIZES = {1: 20, 2: 1, 3: 20, 4: 1, 5: 1, 6: 1}
# Budget share per AI function, in percent of the run's credit cap.
DEFAULT_SHARES = {"clustering": 15, "ideas": 10, "content": 40, "image_prompts": 5, "images": 30}
STAGE_FUNCTION = {1: "clustering", 2: "ideas", 4: "content", 5: "image_prompts", 6: "images"}
MAX_ITEMS = 1_000_000


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


class Limits(BaseModel):
    """Per-run item limits; 0 = unlimited. What a limit leaves behind waits for the next run."""

    model_config = ConfigDict(extra="forbid")

    max_keywords_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_clusters_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_ideas_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_tasks_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_content_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_images_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_approvals_per_run: int = Field(default=0, ge=0, le=MAX_ITEMS)
    max_credits_per_run: Decimal = Field(default=Decimal(0), ge=0, le=Decimal(10_000_000), decimal_places=4)

    def for_stage(self, stage: int) -> int:
        """The item limit on what stage `stage` takes in (stage 7: drafts admitted to review)."""
        return {
            1: self.max_keywords_per_run,
            2: self.max_clusters_per_run,
            3: self.max_ideas_per_run,
            4: self.max_tasks_per_run,
            5: self.max_content_per_run,
            6: self.max_images_per_run,
            7: self.max_approvals_per_run,
        }[stage]


def _check_stage_keys(value: dict[int, object], what: str) -> None:
    unknown = sorted(set(value) - set(STAGES))
    if unknown:
        raise ValueError(f"{what}: stages {unknown} do not exist (stages 1-6 have batches)")


def check_shares(shares: dict[str, int]) -> dict[str, int]:
    unknown = sorted(set(shares) - set(DEFAULT_SHARES))
    if unknown:
        raise ValueError(f"unknown AI functions {unknown}; known: {sorted(DEFAULT_SHARES)}")
    merged = DEFAULT_SHARES | shares
    bad = {k: v for k, v in merged.items() if not 0 <= v <= 100}
    if bad:
        raise ValueError(f"each share must be 0-100, got {bad}")
    if sum(merged.values()) != 100:
        raise ValueError(f"shares must sum to 100, got {sum(merged.values())} ({merged})")
    return merged


class SiteConfig(BaseModel):
    """The full configuration of a site (what GET returns and what is stored)."""

    model_config = ConfigDict(extra="forbid")

    is_enabled: bool = False
    frequency: Frequency = "daily"
    scheduled_time: time = time(2, 0)
    timezone: str = "UTC"
    weekly_day: int = Field(default=0, ge=0, le=6, description="0 = Monday, for weekly schedules")
    monthly_day: int = Field(default=1, ge=1, le=31, description="31 means the last day in shorter months")
    batch_sizes: dict[int, int] = Field(default_factory=lambda: dict(DEFAULT_BATCH_SIZES))
    delay_between_batches_seconds: float = Field(default=0, ge=0, le=3600)
    delay_between_stages_seconds: float = Field(default=0, ge=0, le=86400)
    stage_enabled: dict[int, bool] = Field(default_factory=lambda: dict.fromkeys(STAGES, True))
    limits: Limits = Field(default_factory=Limits)
    budget_shares: dict[str, int] | None = Field(default=None, description="override of the global shares")
    options: StageOptions = Field(default_factory=StageOptions)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        # Checked against the list of names first: ZoneInfo("Europe") or a 300-character name raise
        # OSError (a directory, a name too long for the file system), not ZoneInfoNotFoundError.
        if len(value) > 64 or value not in _zone_names():
            shown = value if len(value) <= 64 else value[:64] + "..."
            raise ValueError(f"unknown time zone {shown!r} (use an IANA name like Europe/Berlin)")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from exc
        return value

    @field_validator("batch_sizes")
    @classmethod
    def _sizes(cls, value: dict[int, int]) -> dict[int, int]:
        _check_stage_keys(dict(value), "batch_sizes")
        bad = {k: v for k, v in value.items() if not 1 <= v <= 1000}
        if bad:
            raise ValueError(f"batch sizes must be 1-1000, got {bad}")
        return DEFAULT_BATCH_SIZES | value

    @field_validator("stage_enabled")
    @classmethod
    def _enabled(cls, value: dict[int, bool]) -> dict[int, bool]:
        _check_stage_keys(dict(value), "stage_enabled")
        return dict.fromkeys(STAGES, True) | value

    @field_validator("budget_shares")
    @classmethod
    def _shares(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        return None if value is None else check_shares(value)

    def shares(self, default: dict[str, int] | None = None) -> dict[str, int]:
        """The site's override, else `default` (the operator's global shares), else the built-in ones."""
        return self.budget_shares or dict(default or DEFAULT_SHARES)


class SiteConfigPatch(BaseModel):
    """A partial update: only the given fields change; the merged result is validated as a whole."""

    model_config = ConfigDict(extra="forbid")

    is_enabled: bool | None = None
    frequency: Frequency | None = None
    scheduled_time: time | None = None
    timezone: str | None = None
    weekly_day: int | None = Field(default=None, ge=0, le=6)
    monthly_day: int | None = Field(default=None, ge=1, le=31)
    batch_sizes: dict[int, int] | None = None
    delay_between_batches_seconds: float | None = Field(default=None, ge=0, le=3600)
    delay_between_stages_seconds: float | None = Field(default=None, ge=0, le=86400)
    stage_enabled: dict[int, bool] | None = None
    limits: Limits | None = None
    budget_shares: dict[str, int] | None = None
    options: StageOptions | None = None

    def apply(self, current: SiteConfig) -> SiteConfig:
        patch = self.model_dump(exclude_unset=True)
        merged = current.model_dump() | patch
        # Nested objects merge field by field: patching options.brand_notes keeps options.target_words.
        # (Pydantic drops their unset fields; prompt_templates inside options is replaced as a whole.)
        for nested in ("options", "limits"):
            if patch.get(nested) is not None:
                given = getattr(self, nested).model_dump(exclude_unset=True)
                merged[nested] = getattr(current, nested).model_dump() | given
        return SiteConfig.model_validate(merged)


class RunTarget(BaseModel):
    """A targeted run: only `item_ids` of what stage `stage` takes in, and in the later stages only what
    descends from them (a task's new draft, that draft's image prompts, ...). Stages before `stage` or
    not in `stages` are skipped. Used to regenerate a rejected draft, and by automation rules."""

    model_config = ConfigDict(extra="forbid")

    stage: int = Field(ge=1, le=6)
    item_ids: list[int] = Field(min_length=1, max_length=10_000)
    stages: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    reason: str = Field(default="", max_length=200)

    def includes(self, stage: int) -> bool:
        return stage >= self.stage and stage in self.stages


class RunPlan(BaseModel):
    """What a run froze at its start."""

    model_config = ConfigDict(extra="forbid")

    batch_sizes: dict[int, int] = Field(default_factory=lambda: dict(DEFAULT_BATCH_SIZES))
    delay_between_batches_seconds: float = 0
    delay_between_stages_seconds: float = 0
    stage_enabled: dict[int, bool] = Field(default_factory=lambda: dict.fromkeys(STAGES, True))
    limits: Limits = Field(default_factory=Limits)
    shares: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_SHARES))
    options: StageOptions = Field(default_factory=StageOptions)
    target: RunTarget | None = None  # None: everything pending

    @model_validator(mode="after")
    def _complete(self) -> RunPlan:
        self.batch_sizes = DEFAULT_BATCH_SIZES | self.batch_sizes
        self.stage_enabled = dict.fromkeys(STAGES, True) | self.stage_enabled
        return self

    @classmethod
    def from_config(cls, config: SiteConfig, default_shares: dict[str, int] | None = None) -> RunPlan:
        return cls(
            batch_sizes=config.batch_sizes,
            delay_between_batches_seconds=config.delay_between_batches_seconds,
            delay_between_stages_seconds=config.delay_between_stages_seconds,
            stage_enabled=config.stage_enabled,
            limits=config.limits,
            shares=config.shares(default_shares),
            options=config.options,
        )

    def stage_share(self, stage: int) -> Decimal | None:
        """Credits stage `stage` may spend: its share of the per-run cap (None: no cap, no split)."""
        cap = self.limits.max_credits_per_run
        function = STAGE_FUNCTION.get(stage)
        if not cap or function is None:
            return None
        return (cap * Decimal(self.shares[function]) / Decimal(100)).quantize(Decimal("0.0001"))
