"""What bench/pipeline.py measures about one finished run, read from the database and the broker.

- Floor per stage, from the calls actually made (ai_calls): max(⌈calls / C⌉, chain) × latency, where C is the
  concurrency the provider allows the stage's workers (per process × replicas) and chain the longest run of
  calls that must go one after another: inside one command, each purpose is a step that needs the previous
  one (an embedding before the naming calls, a draft's frame before its sections), ⌈calls of the purpose / C⌉
  rounds each; stage 1's commands also go one after another (a site's clustering is sequential), the other
  stages' commands are independent. Stage 1 clusters in passes (services/clusterer/convoy.py): a pass's calls
  are recorded with the batch whose turn it was and its riders have none, so that sum is over passes.
  Retried calls count with their attempts.
- Wall per stage: the stage result's started_at → finished_at; the run's: started_at → completed_at.
- Hops of each batch (first send only): release (stage_batches.released_at) → command published (the
  record's broker timestamp) → worker start (result.occurred_at − result.seconds) → work done (the start of
  the worker's result transaction: its outbox row's created_at) → result built inside that transaction
  (result.occurred_at) → result published (broker timestamp; includes the commit and the relay) → result
  applied (stage_batches.finished_at). Every clock is this machine's.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.topics import STAGE_COMMAND_TOPICS, STAGE_RESULTS

HOPS = (
    "release → publish",
    "publish → worker start",
    "work (worker start → done)",
    "persist (done → result built)",
    "commit + relay (→ published)",
    "publish → result applied",
)


@dataclass
class StageFigures:
    stage: int
    batches: int
    calls: int
    chain: int
    floor_s: float
    wall_s: float
    provider_cpu_s: float = 0.0
    rounds: int = 0  # batches one after another on the critical path (at most `window` in flight)

    @property
    def ratio(self) -> float | None:
        return self.wall_s / self.floor_s if self.floor_s > 0 else None


@dataclass
class RunFigures:
    run_id: str
    status: str
    wall_s: float
    stages: list[StageFigures]
    provider_cpu_s: float
    hops: dict[str, list[float]] = field(default_factory=dict)  # hop → ms per batch
    hops_by_stage: dict[int, list[float]] = field(default_factory=dict)  # stage → release→applied ms
    # Stage 1's batches run one after another (each sees the clusters the earlier ones made): per batch, in
    # order, ms of the clusterer's work, of building its result, and the gap until it starts the next one.
    stage1_steps: dict[str, list[float]] = field(default_factory=dict)
    # Per stage, ms of its start and end on the run's path (`transitions`): nothing of a model call in them.
    transitions: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def floor_s(self) -> float:
        return sum(s.floor_s for s in self.stages)

    @property
    def ratio(self) -> float | None:
        return self.wall_s / self.floor_s if self.floor_s > 0 else None

    @property
    def ratio_without_provider_cpu(self) -> float | None:
        return (self.wall_s - self.provider_cpu_s) / self.floor_s if self.floor_s > 0 else None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else math.nan


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """CPU seconds spent between two epoch times, from (epoch, cumulative CPU s) samples (interpolated)."""

    def at(t: float) -> float:
        if not samples:
            return 0.0
        if t <= samples[0][0]:
            return samples[0][1]
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return samples[-1][1]

    return max(at(end) - at(start), 0.0)


def chain_of(calls: list[Any], concurrency: int) -> int:
    """Rounds of calls one command needs: per purpose (a step), ⌈attempts / C⌉."""
    per_purpose: dict[str, int] = defaultdict(int)
    for c in calls:
        per_purpose[c.purpose] += max(int(c.attempts), 1)
    return sum(math.ceil(n / concurrency) for n in per_purpose.values())


async def broker_times(bootstrap: str, run_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """First broker timestamp (epoch s) of each command of the run and of the first result for each command."""
    topics = sorted({*STAGE_COMMAND_TOPICS.values(), STAGE_RESULTS})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in sorted(await producer.partitions_for(t))]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    commands: dict[str, float] = {}
    results: dict[str, float] = {}
    needle = run_id.encode()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        while True:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    if needle not in (r.value or b""):
                        continue
                    body = json.loads(r.value)
                    ts = r.timestamp / 1000
                    if tp.topic == STAGE_RESULTS:
                        results[body["command_id"]] = min(ts, results.get(body["command_id"], ts))
                    else:
                        commands[body["message_id"]] = min(ts, commands.get(body["message_id"], ts))
            if all([await consumer.position(tp) >= end[tp] for tp in parts]):
                return commands, results
    finally:
        await consumer.stop()


def epoch(t: datetime | None) -> float:
    return t.timestamp() if t is not None else math.nan


async def collect(
    engine: AsyncEngine,
    bootstrap: str,
    run_id: str,
    *,
    latency_s: float,
    concurrency: int,
    replicas: int,
    window: int,
    provider_cpu: list[tuple[float, float]],
) -> RunFigures:
    async with engine.connect() as conn:
        run = (await conn.execute(text("SELECT * FROM runs WHERE id = :r"), {"r": run_id})).one()
        stage_rows = (
            await conn.execute(text("SELECT * FROM stage_results WHERE run_id = :r ORDER BY stage"), {"r": run_id})
        ).all()
        batches = (
            await conn.execute(text("SELECT * FROM stage_batches WHERE run_id = :r ORDER BY stage, seq"), {"r": run_id})
        ).all()
        calls = (
            await conn.execute(
                text("SELECT command_id, purpose, attempts FROM ai_calls WHERE run_id = :r"), {"r": run_id}
            )
        ).all()
        worker_rows = (
            await conn.execute(
                text(
                    "SELECT DISTINCT ON (payload->>'command_id') payload, created_at FROM outbox"
                    " WHERE topic = :t AND payload->>'run_id' = :r ORDER BY payload->>'command_id', id"
                ),
                {"t": STAGE_RESULTS, "r": run_id},
            )
        ).all()
    cmd_ts, result_ts = await broker_times(bootstrap, run_id)
    by_batch: dict[str, list[Any]] = defaultdict(list)
    for c in calls:
        by_batch[c.command_id].append(c)
    stage_of = {b.id: b.stage for b in batches}
    total_c = concurrency * replicas
    stages: list[StageFigures] = []
    for sr in stage_rows:
        if sr.stage > 6 or sr.finished_at is None:
            continue
        mine = [b for b in batches if b.stage == sr.stage and b.status == "done"]
        n_calls = sum(max(int(c.attempts), 1) for b in mine for c in by_batch[b.id])
        chains = [chain_of(by_batch[b.id], concurrency) for b in mine]
        chain = sum(chains) if sr.stage == 1 else max(chains, default=0)
        floor = max(math.ceil(n_calls / total_c), chain) * latency_s
        rounds = len(mine) if sr.stage == 1 else math.ceil(len(mine) / window)
        wall = (sr.finished_at - sr.started_at).total_seconds()
        stages.append(
            StageFigures(
                stage=sr.stage,
                batches=len(mine),
                calls=n_calls,
                chain=chain,
                floor_s=floor,
                wall_s=wall,
                provider_cpu_s=cpu_between(provider_cpu, epoch(sr.started_at), epoch(sr.finished_at)),
                rounds=rounds,
            )
        )
    wall = (run.completed_at - run.started_at).total_seconds() if run.completed_at else math.nan
    figures = RunFigures(
        run_id=run_id,
        status=run.status,
        wall_s=wall,
        stages=stages,
        provider_cpu_s=cpu_between(provider_cpu, epoch(run.started_at), epoch(run.completed_at)),
    )
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    per_stage: dict[int, list[float]] = defaultdict(list)
    worker = {row.payload["command_id"]: row for row in worker_rows}
    for b in batches:
        w = worker.get(b.id)
        if b.status != "done" or b.attempt != 1 or w is None or b.id not in cmd_ts or b.id not in result_ts:
            continue
        points = [epoch(b.released_at), cmd_ts[b.id], *worker_span(w), result_ts[b.id], epoch(b.finished_at)]
        for hop, (t0, t1) in zip(HOPS, itertools.pairwise(points), strict=True):
            hops[hop].append((t1 - t0) * 1000)
        per_stage[stage_of[b.id]].append((points[-1] - points[0]) * 1000)
    figures.hops, figures.hops_by_stage = hops, dict(per_stage)
    figures.stage1_steps = stage1_steps(batches, worker)
    figures.transitions = transitions(run, stage_rows, batches, worker, cmd_ts)
    return figures


TRANSITION_STEPS = (
    "opened (previous stage's barrier, or the run's start → stage started)",
    "first command out (stage started → published)",
    "first worker start (published → worker start)",
    "tail (last result built → applied)",
    "closed (last result applied → stage finished)",
)


def transitions(
    run: Any, stage_rows: Any, batches: Any, worker: dict[str, Any], cmd_ts: dict[str, float]
) -> dict[int, dict[str, float]]:
    """Per stage, the ms it spends opening (before its first model call can start) and closing (after its last
    result was built): the part of a stage's wall the floor leaves out whatever the latency."""
    out: dict[int, dict[str, float]] = {}
    opened_from = epoch(run.started_at)
    for sr in stage_rows:
        if sr.stage > 6 or sr.finished_at is None or sr.status == "skipped":
            continue
        mine = [b for b in batches if b.stage == sr.stage and b.status == "done" and b.id in worker]
        if not mine:
            continue
        spans = [worker_span(worker[b.id]) for b in mine]
        published = [cmd_ts[b.id] for b in mine if b.id in cmd_ts]
        last = max(mine, key=lambda b: epoch(b.finished_at))
        started, finished = epoch(sr.started_at), epoch(sr.finished_at)
        steps = [
            started - opened_from,
            (min(published) - started) if published else math.nan,
            (min(s[0] for s in spans) - min(published)) if published else math.nan,
            epoch(last.finished_at) - worker_span(worker[last.id])[2],
            finished - epoch(last.finished_at),
        ]
        out[sr.stage] = {name: ms * 1000 for name, ms in zip(TRANSITION_STEPS, steps, strict=True)}
        opened_from = finished
    return out


# `seconds` is rounded to the millisecond; two passes start further apart than this (a pass's transaction alone
# takes longer).
PASS_START_TOLERANCE = 0.004


def worker_span(w: Any) -> tuple[float, float, float]:
    """(work started, work done = its transaction began, result built) of a worker's result row, epoch s."""
    built = datetime.fromisoformat(w.payload["occurred_at"]).timestamp()
    return built - float(w.payload["seconds"]), epoch(w.created_at), built


def stage1_steps(batches: Any, worker: dict[str, Any]) -> dict[str, list[float]]:
    """Per stage-1 pass in the order worked (services/clusterer/convoy.py): its batches, its work (turn began →
    its transaction), result building, and the gap to the next pass's start. The batches of one pass share its
    start (a rider's `seconds` count from the pass's turn); the pass's own transaction is the first of them."""
    spans = sorted(worker_span(worker[b.id]) for b in batches if b.stage == 1 and b.id in worker)
    passes: list[list[tuple[float, float, float]]] = []
    for span in spans:
        if passes and span[0] - passes[-1][0][0] < PASS_START_TOLERANCE:
            passes[-1].append(span)
        else:
            passes.append([span])
    steps: dict[str, list[float]] = {"batches": [], "work": [], "result built": [], "gap to the next": []}
    for this, following in itertools.zip_longest(passes, passes[1:]):
        start, done, built = min(this, key=lambda span: span[1])
        steps["batches"].append(float(len(this)))
        steps["work"].append((done - start) * 1000)
        steps["result built"].append((built - done) * 1000)
        if following is not None:
            steps["gap to the next"].append((following[0][0] - built) * 1000)
    return steps
