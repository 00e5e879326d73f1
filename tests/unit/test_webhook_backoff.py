"""The retry schedule: the documented delays, bounded jitter, and about a day until a delivery is dead."""

from __future__ import annotations

import random

from services.webhooks.backoff import Backoff
from shared.settings import Settings


def default_backoff(jitter: float = 0.0, seed: int = 1) -> Backoff:
    s = Settings()
    return Backoff(s.webhook_retry_schedule_seconds, s.webhook_retry_every_seconds, s.webhook_max_attempts, jitter,
                   random.Random(seed))  # fmt: skip


def test_default_schedule_then_every_two_hours_for_about_a_day() -> None:
    b = default_backoff()
    assert [b.next_delay(n) for n in range(1, 9)] == [5, 30, 120, 600, 1800, 3600, 7200, 7200]
    assert 22 * 3600 <= b.span() <= 26 * 3600
    assert b.next_delay(b.max_attempts - 1) == 7200
    assert b.next_delay(b.max_attempts) is None  # the last attempt failed: dead


def test_jitter_stays_within_its_bounds_and_varies() -> None:
    b = default_backoff(jitter=0.2, seed=7)
    delays = [b.next_delay(3) for _ in range(200)]
    assert all(d is not None and 96 <= d <= 144 for d in delays)
    assert len(set(delays)) > 100


def test_a_short_schedule_for_tests() -> None:
    b = Backoff([0.5], every=1.0, max_attempts=3)
    assert (b.next_delay(1), b.next_delay(2), b.next_delay(3)) == (0.5, 1.0, None)
