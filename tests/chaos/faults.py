"""The fault suite's driver: start a run, kill -9 one component at a seeded point, restart it, wait for the run
to end, check the invariants from the database (tests/invariants.py), and keep a row for the printed table.

Components: the five services (SIGKILL to the process group), the broker (SIGKILL to the Kafka JVM, restarted on
the same port and data dir) and PostgreSQL (`pg_ctl stop -m immediate`, restarted on the same port and data
dir, replaying its WAL). A kill point is a stage the component works in plus a delay after the run entered it;
how long the component stays down is seeded too.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.stack import SERVICES, WORKERS, Stack
from tests.helpers import create_site, import_keywords, keyword_set, slow_provider, start_run
from tests.invariants import TERMINAL, Violation, check_run

FORM = os.environ.get("CONTENTLINE_CHAOS", "full")
if FORM not in ("full", "reduced"):
    raise ValueError(f"CONTENTLINE_CHAOS must be 'full' or 'reduced', not {FORM!r}")
BASE_SEED = int(os.environ.get("CONTENTLINE_CHAOS_SEED") or secrets.randbelow(1_000_000))

TARGETS = (*SERVICES, "broker", "postgres")
# Where a worker has something to lose; the others are killed in any stage but 3 (local, over in a blink).
WORKER_STAGES = {"clusterer": (1,), "ideator": (2,), "writer": (3, 4), "imager": (5, 6)}
ANY_STAGE = (1, 2, 4, 5, 6)
# Longest delay after the kill point, within how long the component typically holds a batch (with LATENCY_MS):
# stage 1 of 12 keywords is over in well under a second.
AFTER_MAX = {"clusterer": 0.3, "ideator": 0.8, "writer": 0.8, "imager": 0.8}
LATENCY_MS = 150  # every model call: a run of 12 keywords then lasts long enough to be hit mid-stage
RECOVERY_BOUND = 180.0  # from the restart to the run's end
REPEATS_FULL = 2


@dataclass(frozen=True)
class KillPlan:
    stage: int  # kill once the run is in this stage (or later, if it went by unseen)...
    after: float  # ...this many seconds after that was seen
    down: float  # seconds between the kill and the restart


@dataclass(frozen=True)
class Scenario:
    target: str
    seed: int
    name: str

    def plan(self) -> KillPlan:
        rng = random.Random(self.seed)
        return KillPlan(
            stage=rng.choice(WORKER_STAGES.get(self.target, ANY_STAGE)),
            after=round(rng.uniform(0.0, AFTER_MAX.get(self.target, 1.5)), 2),
            down=round(rng.uniform(0.5, 3.0), 2),
        )


def scenarios(form: str = FORM, base_seed: int = BASE_SEED) -> list[Scenario]:
    """Full: every component, twice. Reduced (CI): the orchestrator, one worker (seeded), broker, PostgreSQL."""
    if form == "reduced":
        targets = ["orchestrator", random.Random(base_seed).choice(WORKERS), "broker", "postgres"]
    else:
        targets = [t for t in TARGETS for _ in range(REPEATS_FULL)]
    seen: dict[str, int] = {}
    out = []
    for i, target in enumerate(targets):
        seen[target] = seen.get(target, 0) + 1
        out.append(Scenario(target, base_seed + i, f"{target}-{seen[target]}"))
    return out


@dataclass
class Outcome:
    scenario: str
    seed: int | str
    kill_point: str
    down: float
    restart: float  # seconds the component took to come back (ready, with its token)
    recovery: float | None  # from the restart to the run's end; None: it did not end within the bound
    status: str
    violations: list[Violation] = field(default_factory=list)
    bound: float = RECOVERY_BOUND  # the run had this long after the restart to end
    ended_while_down: bool = False  # the run needed nothing more from the component


def table(outcomes: list[Outcome]) -> str:
    head = "| scenario | seed | kill point | down | restart | recovery (restart → run end) | run | violations |"
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        recovery = (
            f"> {o.bound:.0f} s (bound)"
            if o.recovery is None
            else "0 (ended while it was down)"
            if o.ended_while_down
            else f"{o.recovery:.1f} s"
        )
        rows.append(
            f"| {o.scenario} | {o.seed} | {o.kill_point} | {o.down:.1f} s | {o.restart:.1f} s | {recovery} "
            f"| {o.status} | {len(o.violations)} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------- the run, seen from the database
class RunState(NamedTuple):
    status: str
    stage: int
    in_flight: dict[int, int]  # stage → batches released and not answered yet

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL


async def run_state(engine: AsyncEngine, run_id: str) -> RunState | None:
    """The run's status, stage and batches in flight, or None while PostgreSQL does not answer."""
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT r.status, r.current_stage, b.stage, count(b.id) AS n FROM runs r"
                        " LEFT JOIN stage_batches b ON b.run_id = r.id AND b.status = 'released'"
                        " WHERE r.id = :r GROUP BY r.status, r.current_stage, b.stage"
                    ),
                    {"r": run_id},
                )
            ).all()
    except (DBAPIError, OSError, TimeoutError):
        return None
    in_flight = {int(r.stage): int(r.n) for r in rows if r.stage is not None}
    return RunState(str(rows[0].status), int(rows[0].current_stage), in_flight)


async def wait_run(
    engine: AsyncEngine, run_id: str, timeout: float, until: Callable[[RunState], bool] | None = None
) -> RunState:
    """Until the run ends or `until(state)` holds; returns the last state seen."""
    deadline = time.monotonic() + timeout
    last = RunState("unknown", 0, {})
    while time.monotonic() < deadline:
        state = await run_state(engine, run_id)
        if state is not None:
            last = state
            if state.ended or (until is not None and until(state)):
                return state
        await asyncio.sleep(0.1)
    return last


def kill_point_reached(target: str, plan: KillPlan) -> Callable[[RunState], bool]:
    """A worker once it holds a batch of the stage (or the stage went by unseen); the others once the run is in it."""
    if target in WORKER_STAGES:
        return lambda s: s.in_flight.get(plan.stage, 0) > 0 or s.stage > plan.stage
    return lambda s: s.stage >= plan.stage


# ---------------------------------------------------------------- kill -9 and restart
def kill(stack: Stack, target: str) -> None:
    if target == "broker":
        stack.kill_broker()
    elif target == "postgres":
        stack.kill_postgres()
    else:
        stack.kill_service(target)


def restart(stack: Stack, target: str) -> None:
    if target == "broker":
        stack.start_broker()
    elif target == "postgres":
        stack.start_postgres()  # durable: the suite never runs on the unsafe flags
    else:
        stack.start_service(target)


async def run_scenario(
    stack: Stack, api: httpx.Client, fake: httpx.Client, engine: AsyncEngine, sc: Scenario
) -> Outcome:
    plan = sc.plan()
    site = create_site(api, f"chaos-{sc.name}-{sc.seed}")
    import_keywords(api, site, keyword_set(3, 4))
    slow_provider(fake, LATENCY_MS)
    run_id = str(start_run(api, site)["run_id"])
    t0 = time.monotonic()
    state = await wait_run(engine, run_id, 120, kill_point_reached(sc.target, plan))
    await asyncio.sleep(plan.after)
    state = await run_state(engine, run_id) or state
    t_kill = time.monotonic()
    kill(stack, sc.target)
    point = (
        f"stage {state.stage} ({state.in_flight.get(state.stage, 0)} in flight), {t_kill - t0:.1f} s in"
        if not state.ended
        else f"after the run ({state.status})"
    )
    await asyncio.sleep(plan.down)
    t_restart = time.monotonic()
    restart(stack, sc.target)
    t_up = time.monotonic()
    before = await run_state(engine, run_id)
    ended_while_down = before is not None and before.ended
    status = (await wait_run(engine, run_id, RECOVERY_BOUND)).status
    recovery = None if status not in TERMINAL else 0.0 if ended_while_down else time.monotonic() - t_up
    async with engine.connect() as conn:
        violations = await check_run(conn, run_id, media_root=stack.media_dir)
    return Outcome(
        scenario=sc.name,
        seed=sc.seed,
        kill_point=point,
        down=plan.down,
        restart=t_up - t_restart,
        recovery=recovery,
        status=status,
        violations=violations,
        ended_while_down=ended_while_down,
    )
