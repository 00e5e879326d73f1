"""The few places our code reports to Prometheus: the broker's middleware, a worker's command handling,
model requests at the AI boundary, credits debited."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession

from shared.metrics.families import (
    AI_ATTEMPTS,
    AI_CALL_SECONDS,
    AI_CALLS,
    AI_TOKENS,
    COMMAND_SECONDS,
    CREDITS_DEBITED,
)
from shared.metrics.oncommit import after_commit

if TYPE_CHECKING:
    from shared.ai.usage import CallRecord

R = TypeVar("R")


def kafka_middleware(app_name: str) -> KafkaPrometheusMiddleware:
    """FastStream's own Kafka metrics (`faststream_*`: consumed and published records per topic, handler
    duration, exceptions), labelled `app_name` with the service."""
    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name=app_name)


def timed(topic: str, handler: Callable[[R], Awaitable[None]]) -> Callable[[R], Awaitable[None]]:
    """`handler` with each attempt's duration and outcome observed (a raise is an `error`, then re-raised)."""
    ok, error = COMMAND_SECONDS.labels(topic=topic, outcome="ok"), COMMAND_SECONDS.labels(topic=topic, outcome="error")

    async def run(record: R) -> None:
        started = time.perf_counter()
        try:
            await handler(record)
        except BaseException:
            error.observe(time.perf_counter() - started)
            raise
        ok.observe(time.perf_counter() - started)

    return run


def ai_calls(records: Sequence[CallRecord], unanswered: str | None = None) -> None:
    """Observe finished model requests (their outcome is final: the call that made them has returned).
    `unanswered`: the outcome of the last one when the call broke off before it was answered."""
    for i, r in enumerate(records):
        outcome = unanswered if unanswered and r.ok and i == len(records) - 1 else r.outcome
        AI_CALLS.labels(kind=r.kind, purpose=r.purpose, model=r.model, outcome=outcome).inc()
        AI_CALL_SECONDS.labels(kind=r.kind, purpose=r.purpose, outcome=outcome).observe(r.ms / 1000)
        if r.attempts:
            AI_ATTEMPTS.labels(kind=r.kind, purpose=r.purpose).inc(r.attempts)
        if r.prompt_tokens:
            AI_TOKENS.labels(kind=r.kind, purpose=r.purpose, direction="prompt").inc(r.prompt_tokens)
        if r.completion_tokens:
            AI_TOKENS.labels(kind=r.kind, purpose=r.purpose, direction="completion").inc(r.completion_tokens)


def credits_debited(session: AsyncSession, amount: Decimal, stage: object) -> None:
    """Count a debit once the session's transaction has committed."""
    if amount > 0:
        child = CREDITS_DEBITED.labels(stage=str(stage if stage is not None else ""))
        after_commit(session, lambda: child.inc(float(amount)))
