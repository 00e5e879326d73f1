"""Configuration through environment variables (pydantic-settings).

Every service reads the same `Settings`; each field documents the env var that sets it. Secrets are
`SecretStr` so they never reach logs or reprs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTENTLINE_", extra="forbid")

    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql+asyncpg://contentline:contentline@127.0.0.1:55432/contentline"
    # Partitions per topic: enough for several replicas of each service.
    topic_partitions: int = Field(default=6, ge=1, le=256)

    # The AI boundary. OPENAI_API_KEY / OPENAI_BASE_URL are the names every OpenAI-compatible tool knows.
    openai_api_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("OPENAI_API_KEY", "CONTENTLINE_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "CONTENTLINE_OPENAI_BASE_URL")
    )
    chat_model: str = "gpt-4o-mini"
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int | None = Field(default=256, ge=16, le=4096)
    embedding_batch_size: int = Field(default=512, ge=1, le=2048)
    image_model: str = "gpt-image-1"
    ai_timeout_seconds: float = Field(default=60.0, gt=0)
    ai_max_attempts: int = Field(default=4, ge=1, le=10)  # transient errors (429/5xx/timeouts)
    ai_retry_budget_seconds: float = Field(default=120.0, gt=0)
    ai_invalid_output_attempts: int = Field(default=3, ge=1, le=10)
    ai_max_concurrency: int = Field(default=8, ge=1, le=256)

    media_dir: Path = Path("var/media")
    log_level: str = "INFO"

    # Orchestrator
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8700, ge=1, le=65535)
    inflight_batches_per_run: int = Field(default=4, ge=1, le=100)
    # From release to result, queueing behind other batches on the site's partition included.
    stage_deadline_seconds: float = Field(default=3600.0, gt=0)
    tick_seconds: float = Field(default=2.0, gt=0)
    # The operator key (create accounts, move credits, global budget shares, /ops): the key itself, or a
    # file that holds it (a Docker or Kubernetes secret). Never logged. Without one, operator routes
    # answer 401 to everyone. Account keys live in the database (only their hashes).
    operator_key: SecretStr | None = None
    operator_key_file: Path | None = None
    # JSON of services.orchestrator.costs.CostTable fields, e.g. {"words_per_credit": 400}; unset = defaults.
    cost_table_json: str | None = None
    run_log_dir: Path | None = None  # also write each run's activity log to <dir>/<run_id>.log

    # Outbox relay: a new row wakes the relay at once; the poll is the safety net after a crash.
    outbox_poll_seconds: float = Field(default=1.0, gt=0)

    # Encrypts stored credentials (WordPress application passwords): Fernet keys, comma-separated, newest first.
    # The first encrypts, every one decrypts, so a key is rotated without downtime (README: Publishing).
    secret_key: SecretStr = SecretStr("")

    # Publisher: WordPress calls, and the status sync that re-reads every published post this often.
    wordpress_timeout_seconds: float = Field(default=30.0, gt=0)
    wordpress_max_attempts: int = Field(default=4, ge=1, le=10)  # transient errors (timeouts, 429, 5xx)
    wordpress_retry_budget_seconds: float = Field(default=60.0, gt=0)
    publisher_sync_seconds: float = Field(default=300.0, gt=0)
    # Orchestrator's publishing schedule: `immediate` mode spaces a site's drafts this far apart (issue 14: 60 s);
    # the demo and tests shorten it. Due drafts are handed to the publisher every `tick_seconds`.
    publish_immediate_spacing_seconds: float = Field(default=60.0, ge=1, le=3600)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
