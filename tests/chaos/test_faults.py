"""kill -9 each service, the broker and PostgreSQL at a seeded point of a run: the run still ends, completed, within
a bound after the restart, and every invariant of tests/invariants.py holds in the database."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.stack import Stack
from tests.chaos.faults import RECOVERY_BOUND, Outcome, Scenario, run_scenario, scenarios

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda sc: sc.name)
async def test_a_run_survives_a_kill(
    scenario: Scenario,
    stack: Stack,
    api: httpx.Client,
    fake: httpx.Client,
    chaos_engine: AsyncEngine,
    chaos_outcomes: list[Outcome],
) -> None:
    outcome = await run_scenario(stack, api, fake, chaos_engine, scenario)
    chaos_outcomes.append(outcome)
    where = f"{scenario.name} (seed {scenario.seed}, killed at {outcome.kill_point})"
    # Nothing here makes an item fail: every fault is one the design recovers from, so the run completes.
    assert outcome.recovery is not None, f"{where}: the run did not end within {RECOVERY_BOUND:.0f}s of the restart"
    assert outcome.status == "completed", f"{where}: the run ended {outcome.status}"
    assert outcome.violations == [], f"{where}: " + "\n".join(map(str, outcome.violations))
