"""Wiring of a stage worker process: one consumer group on one command topic, commit after the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy, FastStream

from shared.runtime import Runtime

# Longest handler: a batch of model calls, each with its own timeout and retry budget. Kafka must not
# consider the consumer dead while it works, so the poll interval is well above that.
MAX_POLL_INTERVAL_MS = 30 * 60 * 1000


def worker_app(rt: Runtime, topic: str, handler: Callable[..., Awaitable[Any]]) -> FastStream:
    rt.broker.subscriber(
        topic,
        group_id=f"contentline-{rt.name}",
        # Commit only after the handler finished (at-least-once); an infrastructure failure nacks, which
        # seeks back so the record is redelivered (after the handler's back-off, not in a hot loop).
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        max_poll_records=10,
        title=f"{rt.name}:{topic}",
    )(handler)
    return FastStream(
        rt.broker,
        on_startup=[rt.ai.check_configured, rt.on_startup],
        after_startup=[rt.after_startup],
        on_shutdown=[rt.on_shutdown],
    )
