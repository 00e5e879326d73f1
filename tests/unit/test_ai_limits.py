"""Rate limits per provider: a 429's Retry-After and the x-ratelimit-* headers are followed (the wait is not an
attempt), and our own requests/tokens-per-minute ceilings apply per function."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from fakeai import FakeSettings
from fakeai.faults import FaultRule
from fakeai.serve import serving
from shared.ai import AiClient, Usage
from shared.ai.limits import ProviderLimiter, parse_reset
from shared.settings import Settings


@pytest.mark.parametrize(
    ("value", "seconds"), [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5)]
)
def test_reset_header_formats(value: str, seconds: float) -> None:
    assert parse_reset(value) == pytest.approx(seconds)
    assert parse_reset(None) is None and parse_reset("soon") is None


async def test_a_429_with_retry_after_and_ratelimit_headers_pauses_every_request_to_that_provider() -> None:
    rule = FaultRule(kind="rate_limit", endpoint="embeddings", times=1, retry_after=1.2)
    async with serving(FakeSettings(faults=[rule])) as fake:
        ai = AiClient(Settings(openai_base_url=fake.url, openai_api_key=SecretStr("k"), ai_max_attempts=2))
        first, second = Usage(), Usage()
        started = time.monotonic()
        task = asyncio.create_task(ai.embed(["a"], "kw", first))
        while (await fake.stats())["faults_injected"] == 0:  # the 429 has arrived: the next request waits too
            await asyncio.sleep(0.02)
        other = await ai.embed(["b"], "kw", second)
        await task
        elapsed = time.monotonic() - started
        await ai.close()
        assert other.shape == (1, 256) and elapsed >= 1.2
        assert first.records[0].attempts == 2 and first.records[0].ok  # the 429, then the retry that worked
        assert second.records[0].attempts == 1  # it waited instead of running into the limit
        assert ai.limiter("embeddings").pauses >= 1 and (await fake.stats())["embeddings"] == 3


async def test_remaining_tokens_below_the_request_wait_for_the_reset() -> None:
    limiter = ProviderLimiter()
    limiter.observe({"x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "400ms"})
    started = time.monotonic()
    assert await limiter.acquire(50) < 0.05  # fits what is left
    assert await limiter.acquire(500) >= 0.35  # does not: waits for the window to reset
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"})
    assert await limiter.acquire(1) >= 0.25 and time.monotonic() - started >= 0.6


async def test_our_own_tokens_per_minute_ceiling() -> None:
    limiter = ProviderLimiter(tokens_per_minute=600)  # 10 tokens a second
    assert await limiter.acquire(600) < 0.05
    waited = await limiter.acquire(5)
    assert 0.3 <= waited < 2.0


async def test_requests_beyond_the_servers_slots_wait_outside_their_timeout() -> None:
    # one slot, like `llama-server -np 1`: three requests of 0.4 s each, a timeout of 0.7 s per attempt
    rule = FaultRule(kind="slow", endpoint="embeddings", delay_ms=400)
    async with serving(FakeSettings(faults=[rule])) as fake:
        settings = Settings(
            openai_base_url=fake.url,
            openai_api_key=SecretStr("k"),
            embedding_max_concurrency=1,
            embedding_timeout_seconds=0.7,
            ai_max_attempts=1,
        )
        ai, usage = AiClient(settings), Usage()
        started = time.monotonic()
        await asyncio.gather(*(ai.embed([f"t{i}"], "kw", usage) for i in range(3)))
        assert time.monotonic() - started >= 1.2  # one after the other, none timed out
        assert all(r.ok and r.attempts == 1 for r in usage.records)
