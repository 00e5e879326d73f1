"""When a failed delivery is tried again: a fixed schedule (roughly exponential), then a steady interval,
each delay spread by ± jitter so the retries of many deliveries that failed together do not arrive together.

Defaults (shared.settings): 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then every 2 h; 18 attempts in all span
about 24 hours, then the delivery is dead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    schedule: Sequence[float]
    every: float
    max_attempts: int
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def base_delay(self, attempts: int) -> float:
        """Seconds between attempt number `attempts` (1-based) failing and the next attempt, before jitter."""
        return float(self.schedule[attempts - 1]) if attempts <= len(self.schedule) else self.every

    def next_delay(self, attempts: int) -> float | None:
        """The delay before the next attempt, or None when `attempts` attempts were the last allowed."""
        if attempts >= self.max_attempts:
            return None
        return self.base_delay(attempts) * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def span(self) -> float:
        """Seconds from the first attempt to the last, without jitter."""
        return sum(self.base_delay(n) for n in range(1, self.max_attempts))
