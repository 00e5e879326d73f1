"""contentline's own metric families, on prometheus_client's default registry (one process = one service).

What the frameworks measure is not repeated here: FastStream's Kafka middleware counts every record consumed
and published per topic with its handler's duration and exceptions (`faststream_*`), the instrumentator
counts the orchestrator's HTTP requests (`http_*`), prometheus_client adds `process_*` and `python_*`. These
are what only our code can see. README "Metrics" lists them all.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Model requests take from tens of milliseconds (embeddings) to minutes (a long draft on a slow provider).
AI_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# A stage command: a few milliseconds (an answered re-ask) to many minutes (a batch of long drafts).
COMMAND_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

AI_CALLS = Counter(
    "contentline_ai_calls",
    "Model requests (re-asks included) by function, purpose, model and outcome (ok or a FailureKind)",
    ["kind", "purpose", "model", "outcome"],
)
AI_CALL_SECONDS = Histogram(
    "contentline_ai_call_seconds",
    "Time of a model request as the caller saw it: rate-limit waits, transient retries and back-off included",
    ["kind", "purpose", "outcome"],
    buckets=AI_SECONDS_BUCKETS,
)
AI_ATTEMPTS = Counter(
    "contentline_ai_attempts",
    "HTTP attempts of model requests (more than the requests: transient failures were retried)",
    ["kind", "purpose"],
)
AI_TOKENS = Counter(
    "contentline_ai_tokens",
    "Tokens the providers reported, by function, purpose and direction (prompt|completion)",
    ["kind", "purpose", "direction"],
)
COMMAND_SECONDS = Histogram(
    "contentline_command_seconds",
    "A stage worker's handling of one command record, per attempt (outcome ok|error). FastStream's own "
    "duration sees only the hand-off to the worker's pool",
    ["topic", "outcome"],
    buckets=COMMAND_SECONDS_BUCKETS,
)
COMMANDS_IN_FLIGHT = Gauge(
    "contentline_commands_in_flight",
    "Command records a stage worker holds between fetch and commit",
    ["topic"],
)
STAGE_WORKER_PROCESSES = Gauge(
    "contentline_stage_worker_processes",
    "Processes of the worker group that hold a partition of each command topic, as the orchestrator last read "
    "them from the broker (its release window scales with them)",
    ["topic"],
)
DEAD_LETTERS = Counter(
    "contentline_dead_letters",
    "Records this process copied to a dead-letter topic (unparseable, or given up after bounded attempts)",
    ["source_topic", "topic"],
)
CREDITS_DEBITED = Counter(
    "contentline_credits_debited",
    "Credits charged to accounts for stage results, counted once their transaction committed",
    ["stage"],
)
FIGURE_FAILURES = Counter(
    "contentline_metrics_refresh_failures",
    "Scrape-time figures (outbox, consumer_lag) that could not be read; their gauges are absent until they can",
    ["figure"],
)
