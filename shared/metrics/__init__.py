"""Prometheus metrics of every service (README "Metrics").

families.py  our own metric families (model requests, commands, dead letters, credits)
hooks.py     where the code reports: FastStream's Kafka middleware, worker commands, AI requests, debits
oncommit.py  count what a transaction did once it committed
endpoint.py  `/metrics` on the process's metrics port, with the outbox backlog and consumer lag read on scrape

The endpoint is imported from its module (shared.metrics.endpoint): it reads the database and the broker,
which the modules reporting here must not drag in.
"""

from shared.metrics.hooks import ai_calls, credits_debited, kafka_middleware, timed

__all__ = ["ai_calls", "credits_debited", "kafka_middleware", "timed"]
