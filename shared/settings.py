"""Configuration through environment variables (pydantic-settings).

Every service reads the same `Settings`; each field documents the env var that sets it. Secrets are
`SecretStr` so they never reach logs or reprs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, PositiveFloat, SecretStr
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
    # A released batch whose result has not come after this silence is asked again with the same command id
    # (a worker that already answered re-sends its stored result; README "Ask again"). The silence grows with
    # the work: at least `silence_work_factor` × the longest wait of the stage's answered batches in the run.
    # Re-asks double their spacing (after 1, 3, 7, 15 … silences); the stage deadline stays the last resort.
    silence_timeout_seconds: float = Field(default=120.0, gt=0)
    silence_work_factor: float = Field(default=3.0, ge=1)
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
    # Webhooks (services/webhooks, README: Webhooks). A failed delivery is retried after the n-th entry of the
    # schedule (seconds, ±jitter), then every `webhook_retry_every_seconds` until `webhook_max_attempts`
    # attempts: about 24 hours with the defaults, then the delivery is dead.
    webhook_retry_schedule_seconds: list[PositiveFloat] = Field(
        default=[5, 30, 120, 600, 1800, 3600], min_length=1, max_length=50
    )
    webhook_retry_every_seconds: float = Field(default=7200.0, gt=0)
    webhook_max_attempts: int = Field(default=18, ge=1, le=100)
    webhook_retry_jitter: float = Field(default=0.2, ge=0, lt=1)  # ± fraction, so retries of many do not align
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)  # the whole request, response included
    webhook_max_concurrency: int = Field(default=32, ge=1, le=1000)  # requests in flight per process
    webhook_max_per_endpoint: int = Field(default=4, ge=1, le=100)  # ... and per endpoint
    webhook_poll_seconds: float = Field(default=1.0, gt=0)  # new deliveries wake the dispatcher at once
    webhook_secret_grace_hours: float = Field(default=24.0, ge=0)  # a rotated-out secret still signs this long
    webhook_log_retention_days: float = Field(default=30.0, gt=0)  # delivered and dead deliveries are kept


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
