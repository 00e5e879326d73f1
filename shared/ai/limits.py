"""Requests- and tokens-per-minute limits per provider endpoint, following what the provider says.

Two parts: our own ceilings (`aiolimiter` leaky buckets from `CONTENTLINE_*_REQUESTS_PER_MINUTE` /
`_TOKENS_PER_MINUTE`), and the provider's word, which `aiolimiter` has no notion of and is therefore kept
here by hand: a 429's `Retry-After` pauses every request to that endpoint, `x-ratelimit-remaining-requests: 0`
pauses until `x-ratelimit-reset-requests`, and a request estimated at more tokens than
`x-ratelimit-remaining-tokens` waits for `x-ratelimit-reset-tokens`. Waiting here happens before an attempt's
timeout starts, so a throttled provider never costs an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Mapping

from aiolimiter import AsyncLimiter

from shared.ai.errors import retry_after_seconds

MAX_PAUSE = 60.0  # a provider asking for more than this is asked again after a minute
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str | None) -> float | None:
    """`x-ratelimit-reset-*` as seconds from now: "1s", "6m0s", "20ms", "1.5" or an epoch timestamp."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        number = float(value)
        return max(number - time.time(), 0.0) if number > 1e9 else number
    parts = _DURATION.findall(value)
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[unit] for n, unit in parts)


def _int(headers: Mapping[str, str], name: str) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        raw = headers.get(name)
        return int(float(raw)) if raw is not None else None
    return None


class ProviderLimiter:
    def __init__(self, requests_per_minute: int = 0, tokens_per_minute: int = 0) -> None:
        self._requests = AsyncLimiter(requests_per_minute, 60) if requests_per_minute else None
        self._tokens = AsyncLimiter(tokens_per_minute, 60) if tokens_per_minute else None
        self._tpm = tokens_per_minute
        self._resume_at = 0.0  # monotonic: no request before this
        self._tokens_left: int | None = None
        self._tokens_reset_at = 0.0
        self.pauses = 0  # how often the provider's word made us wait (for tests and logs)

    async def acquire(self, tokens: int) -> float:
        """Wait until a request estimated at `tokens` may go; returns the seconds waited."""
        started = time.monotonic()
        while True:
            now = time.monotonic()
            wait = self._resume_at - now
            if self._tokens_left is not None and tokens > self._tokens_left and self._tokens_reset_at > now:
                wait = max(wait, self._tokens_reset_at - now)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            await self._tokens.acquire(min(max(tokens, 1), self._tpm))
        return time.monotonic() - started

    def observe(self, headers: Mapping[str, str] | None, status: int | None = None) -> None:
        """Follow the provider's rate-limit headers on any reply (success or 429)."""
        if headers is None:
            return
        now = time.monotonic()
        pause = 0.0
        if status == 429:
            pause = retry_after_seconds(headers) or parse_reset(headers.get("x-ratelimit-reset-requests")) or 1.0
        if _int(headers, "x-ratelimit-remaining-requests") == 0:
            pause = max(pause, parse_reset(headers.get("x-ratelimit-reset-requests")) or 1.0)
        tokens_left = _int(headers, "x-ratelimit-remaining-tokens")
        if tokens_left is not None:
            self._tokens_left = tokens_left
            self._tokens_reset_at = now + min(parse_reset(headers.get("x-ratelimit-reset-tokens")) or 1.0, MAX_PAUSE)
            if tokens_left == 0:
                pause = max(pause, self._tokens_reset_at - now)
        if pause > 0:
            self.pauses += 1
            self._resume_at = max(self._resume_at, now + min(pause, MAX_PAUSE))
