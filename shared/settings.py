"""Configuration through environment variables (pydantic-settings).

Every service reads the same `Settings`; each field documents the env var that sets it. Secrets are
`SecretStr` so they never reach logs or reprs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveFloat, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTENTLINE_", extra="forbid")

    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql+asyncpg://contentline:contentline@127.0.0.1:55432/contentline"
    # Partitions per topic: enough for several replicas of each service.
    topic_partitions: int = Field(default=6, ge=1, le=256)

    # ---------------------------------------------------------------- the AI boundary (shared/ai/)
    # OPENAI_API_KEY / OPENAI_BASE_URL are the names every OpenAI-compatible tool knows; they are the common
    # provider that chat, embeddings and images fall back to when their own base URL / key is not set.
    openai_api_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("OPENAI_API_KEY", "CONTENTLINE_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "CONTENTLINE_OPENAI_BASE_URL")
    )
    # Chat (cluster names, ideas, drafts, image prompts). `*_api_version` set = Azure OpenAI deployments API.
    chat_base_url: str | None = None
    chat_api_key: SecretStr | None = None
    chat_api_version: str | None = None
    chat_model: str = "gpt-4o-mini"
    # Per AI function; unset = chat_model.
    cluster_label_model: str | None = None
    ideas_model: str | None = None
    draft_frame_model: str | None = None
    draft_section_model: str | None = None
    image_prompts_model: str | None = None
    chat_timeout_seconds: float | None = Field(default=None, gt=0)  # unset: ai_timeout_seconds, else 60
    # json_schema (enforced by the provider), json_object (JSON mode) or none (JSON parsed from the text).
    chat_response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    # Which request field carries the output cap; a provider that refuses one gets the other (once, then kept).
    chat_token_limit_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    chat_max_output_tokens: int = Field(default=8192, ge=64, le=200_000)  # cap on any one reply's budget
    chat_requests_per_minute: int = Field(default=0, ge=0)  # 0 = no client-side limit (headers still obeyed)
    chat_tokens_per_minute: int = Field(default=0, ge=0)
    # Requests in flight per worker process; unset = ai_max_concurrency. A local server with N slots
    # (llama-server -np N, Ollama's OLLAMA_NUM_PARALLEL) makes the rest queue on its side, inside our timeout.
    chat_max_concurrency: int | None = Field(default=None, ge=1, le=256)
    # Embeddings (keyword clustering).
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_api_version: str | None = None
    embedding_model: str = "text-embedding-3-small"
    # Sent only when set: many providers do not know the parameter, and the model's own size is the default.
    embedding_dimensions: int | None = Field(default=None, ge=16, le=4096)
    embedding_batch_size: int = Field(default=512, ge=1, le=2048)
    embedding_timeout_seconds: float | None = Field(default=None, gt=0)  # unset: ai_timeout_seconds, else 120
    embedding_requests_per_minute: int = Field(default=0, ge=0)
    embedding_tokens_per_minute: int = Field(default=0, ge=0)
    embedding_max_concurrency: int | None = Field(default=None, ge=1, le=256)
    # Images.
    image_base_url: str | None = None
    image_api_key: SecretStr | None = None
    image_api_version: str | None = None
    image_model: str = "gpt-image-1"
    image_timeout_seconds: float | None = Field(default=None, gt=0)  # unset: ai_timeout_seconds, else 180
    image_requests_per_minute: int = Field(default=0, ge=0)
    image_max_concurrency: int | None = Field(default=None, ge=1, le=256)
    # Shared by all functions.
    ai_timeout_seconds: float | None = Field(default=None, gt=0)  # one timeout for every function, if set
    ai_max_attempts: int = Field(default=4, ge=1, le=10)  # per request, for transient errors (429/5xx/timeouts)
    # Unset: derived so that every attempt gets its full timeout (attempts x timeout + waits between them).
    ai_retry_budget_seconds: float | None = Field(default=None, gt=0)
    ai_invalid_output_attempts: int = Field(default=3, ge=1, le=10)  # asks per structured reply (re-asks change)
    ai_max_concurrency: int = Field(default=8, ge=1, le=256)
    ai_language_check: bool = True  # prose replies in another language than the site's are re-asked

    media_dir: Path = Path("var/media")
    log_level: str = "INFO"
    # Every service process's event loop (shared/event_loop.py); "asyncio" is the standard library's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Set by the launcher (devstack) for each start: the orchestrator's /health echoes the token and every
    # service writes it to `ready_file` once its broker is started, so the launcher knows it reached this
    # very process, not another one holding the port or a file left by an earlier start. Not a secret.
    instance_token: str | None = None
    ready_file: Path | None = None

    # Orchestrator
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8700, ge=1, le=65535)
    # Batches of one run out at once; unset = 2 × ai_max_concurrency. A worker works up to ai_max_concurrency
    # commands at once (shared/worker_app.py), so a smaller window leaves a single site's run using part of it
    # (the former default 4 used half at C = 8), and twice that keeps the next commands queued at the worker
    # while results travel back. Measured on 1,500 keywords at 200 ms: 4.60× / 3.84× its floor with 4, 3.13× /
    # 2.41× with 16 (bench/pipeline.py, 2026-12-02). Cost caps count in-flight estimates, so no overspend.
    # Unset, the window is per worker process: × the processes of the stage's worker group (runs/census.py).
    # Set, it is the run's window whatever the number of workers.
    inflight_batches_per_run: int | None = Field(default=None, ge=1, le=1000)
    # How often the orchestrator reads the stage workers' consumer groups from the broker (runs/census.py).
    worker_census_seconds: float = Field(default=5.0, gt=0)
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
    # An item that failed this many runs in a row is parked (no stage takes it in until un-parked); 0 = never.
    park_after_failed_runs: int = Field(default=3, ge=0, le=100)

    # Outbox relay: a new row wakes the relay at once; the poll is the safety net after a crash.
    outbox_poll_seconds: float = Field(default=1.0, gt=0)

    # Prometheus /metrics of this process (shared/metrics, README "Metrics"): its own small HTTP server on this
    # port, apart from the orchestrator's API (scrapers carry no API key, and the figures span every account).
    # Unset: not served. Loopback by default; 0.0.0.0 (or the pod's address) only on a network scrapers own.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # Outbox backlog and consumer lag are read (database, broker) when scraped, at most this often.
    metrics_cache_seconds: float = Field(default=10.0, ge=0, le=3600)

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
    # Automation rules (services/rules): how often each replica looks for due cron rules, pending executions
    # (a busy site's) and finished runs; how long a busy site's execution waits before it is tried again.
    rules_tick_seconds: float = Field(default=2.0, gt=0)
    rules_busy_retry_seconds: float = Field(default=10.0, gt=0)
    # Orchestrator's publishing schedule: `immediate` mode spaces a site's drafts this far apart (issue 14: 60 s);
    # the demo and tests shorten it. Due drafts are handed to the publisher every `tick_seconds`.
    publish_immediate_spacing_seconds: float = Field(default=60.0, ge=1, le=3600)

    @property
    def worker_commands_in_flight(self) -> int:
        """Commands a worker process holds at once: ai_max_concurrency at work and as many ready behind them
        (fetched, attempt counted, inputs loaded, waiting for a model slot), so a freed slot starts the next
        call at once instead of after a fetch and a transaction. The AI client's slots bound the model calls."""
        return 2 * self.ai_max_concurrency

    @property
    def release_window(self) -> int:
        """The batches of one run out at once (`inflight_batches_per_run`, else 2 × ai_max_concurrency per
        worker process of the stage: services/orchestrator/runs/census.py)."""
        return self.inflight_batches_per_run or 2 * self.ai_max_concurrency

    @property
    def clustering_window(self) -> int:
        """Stage-1 batches of one run out at once, and what the clusterer holds: 4 × the release window. A
        site's batches are clustered in passes, one after another, each taking along the batches loaded behind
        it (services/clusterer/convoy.py). With one window out, a pass took the whole window and the next pass
        waited for its results to travel back and new batches to be released; with four, the next pass's
        batches are loaded while one runs. Holding them costs no model concurrency (a pass's calls are bounded
        by the AI client's slots) and little memory (keyword rows)."""
        return 4 * self.release_window


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
