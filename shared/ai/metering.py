"""Prometheus figures of every model request (shared.metrics), taken when the client's call returns.

A request's outcome is final only then (a reply that parses may still be re-asked for its language), so
the decorated call works on a Usage of its own and hands its records to the caller's afterwards. That also
keeps concurrent calls sharing one Usage (a worker's gather) from seeing each other's records.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from shared import metrics
from shared.ai.errors import AiError
from shared.ai.usage import Usage

P = ParamSpec("P")
R = TypeVar("R")


def metered(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Observe the records a client method leaves in its `usage` argument."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(*args, **kwargs)
        caller: Usage = bound.arguments["usage"]
        own = bound.arguments["usage"] = Usage()
        unanswered: str | None = None
        try:
            return await method(*bound.args, **bound.kwargs)
        except BaseException as exc:
            if not isinstance(exc, AiError):
                # the last request never got its answer: cancelled (a rebalance, shutdown) or broken off
                unanswered = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
            raise
        finally:
            for record in own.records:
                caller.add(record)
            metrics.ai_calls(own.records, unanswered=unanswered)

    return call
