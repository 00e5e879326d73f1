"""Issue 12's acceptance test: PostgreSQL crashes (`pg_ctl stop -m immediate`) right after the orchestrator
acknowledged a stage-4 result, and the crash loses that acknowledged commit. The result will never be delivered
again (its Kafka offset is committed), so only asking the worker again brings the batch back: the run must
complete within the silence timeout plus one stage's work, every invariant at zero.

To force the loss, this test alone runs PostgreSQL on the unsafe flags (fsync, synchronous_commit and
full_page_writes off) with the WAL writer waking only every 10 s: a commit is acknowledged before its WAL
leaves the server's memory, and the immediate stop throws that memory away. "Right after the acknowledgement"
is watched, not guessed: the orchestrator's consumer group committed an offset past a stage-4 result of the
run (read from Kafka with the admin client), and PostgreSQL is stopped at once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.stack import Stack
from services.orchestrator.app import GROUP
from shared.contracts import StageResult
from shared.topics import STAGE_RESULTS
from tests.chaos.conftest import SILENCE_SECONDS
from tests.chaos.faults import Outcome, wait_run
from tests.helpers import configure, create_site, import_keywords, keyword_set, slow_provider, start_run
from tests.invariants import check_run

pytestmark = pytest.mark.chaos

STAGE = 4
# Tries with a new site until the crash loses the acknowledged commit (see the test).
TRIES = 8
# The PostgreSQL restart and the orchestrator's reconnect, on a busy machine.
SLACK_SECONDS = 15.0


class AckWatch:
    """Stage results of one run as they appear on the topic, and whether the orchestrator committed past them."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.partitions: list[TopicPartition] = []
        self.seen: list[tuple[TopicPartition, int, StageResult]] = []
        self.running = False

    async def start(self) -> None:
        """From the topic's current end: everything the run will produce comes after."""
        await self.consumer.start()
        await self.admin.start()
        self.running = True
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)  # partitions_for() waits for the metadata
        await producer.start()
        try:
            parts = await producer.partitions_for(STAGE_RESULTS)
        finally:
            await producer.stop()
        self.partitions = [TopicPartition(STAGE_RESULTS, p) for p in sorted(parts)]
        assert self.partitions, f"{STAGE_RESULTS} has no partitions"
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_end(*self.partitions)
        for tp in self.partitions:
            await self.consumer.position(tp)  # resolve "end" now, before the run starts

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.consumer.stop()
            await self.admin.close()

    async def next_acknowledged(self, run_id: str, stage: int, timeout: float) -> StageResult:
        """The first result of `run_id` at `stage` whose offset the orchestrator's group has committed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for tp, records in (await self.consumer.getmany(timeout_ms=20)).items():
                for record in records:
                    result = StageResult.model_validate_json(record.value)
                    if result.run_id == run_id and int(result.stage) == stage:
                        self.seen.append((tp, record.offset, result))
            if self.seen:
                committed = await self.admin.list_consumer_group_offsets(
                    GROUP, partitions=list({tp for tp, _, _ in self.seen})
                )
                for tp, offset, result in self.seen:
                    mark = committed.get(tp)
                    if mark is not None and mark.offset > offset:
                        return result
        raise AssertionError(f"no stage-{stage} result of {run_id} was acknowledged within {timeout:.0f}s")


async def batch_status(engine: AsyncEngine, command_id: str) -> str | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(text("SELECT status FROM stage_batches WHERE id = :id"), {"id": command_id})
        ).scalar()


async def evidence(engine: AsyncEngine, run_id: str, acked: StageResult, killed_at: datetime) -> str:
    """What a violation is read against: the stage's batches, its drafts and the writer's inbox rows."""
    queries = {
        "batches": "SELECT id, seq, status, attempt, item_ids, result, released_at, "
        "finished_at FROM stage_batches WHERE run_id = :run AND stage = 4 ORDER BY seq",
        "model calls": "SELECT service, command_id, created_at FROM ai_calls "
        "WHERE run_id = :run AND service = 'writer'",
        "drafts": "SELECT d.id, d.task_id, d.run_id, d.quality_passed, d.created_at FROM drafts d "
        "JOIN writer_tasks t ON t.id = d.task_id JOIN runs r ON r.site_id = t.site_id WHERE r.id = :run",
        "writer inbox": "SELECT i.consumer, i.message_id, i.processed_at, i.result->'failures' AS failures "
        "FROM inbox i WHERE i.message_id IN (SELECT id FROM stage_batches WHERE run_id = :run AND stage = 4)",
    }
    lines = [
        f"acknowledged then lost: batch {acked.command_id} (seq {acked.batch_seq}), result {acked.message_id}; "
        f"PostgreSQL killed at {killed_at:%H:%M:%S.%f}"
    ]
    async with engine.connect() as conn:
        for name, sql in queries.items():
            lines.append(f"{name}:")
            lines += [f"  {dict(row._mapping)}" for row in await conn.execute(text(sql), {"run": run_id})]
    return "\n".join(lines)


async def test_a_result_lost_in_a_database_crash_is_asked_for_again(
    stack: Stack, api: httpx.Client, fake: httpx.Client, chaos_engine: AsyncEngine, chaos_outcomes: list[Outcome]
) -> None:
    # Whether the crash loses the acknowledged commit is up to PostgreSQL: a commit that fills a WAL page wakes
    # the WAL writer, which writes the pages before it, so a commit followed closely by others can survive.
    # A try that did not lose it is still a crash the run must survive (checked the same way); the next try
    # runs a new site. Measured on 2026-12-02: 8 of 13 tries lost the commit, so 8 tries in a row that do not
    # happen about once in 2,000 runs.
    tries: list[str] = []
    for attempt in range(1, TRIES + 1):
        lost = await one_try(stack, api, fake, chaos_engine, chaos_outcomes, attempt)
        if lost:
            return
        tries.append(f"try {attempt}: the acknowledged commit survived the crash")
    raise AssertionError(
        f"in {TRIES} tries the crash never lost the acknowledged result: the test could not force the loss it is "
        f"about ({'; '.join(tries)})"
    )


async def one_try(
    stack: Stack,
    api: httpx.Client,
    fake: httpx.Client,
    chaos_engine: AsyncEngine,
    chaos_outcomes: list[Outcome],
    attempt: int,
) -> bool:
    """One run through the crash; whether the crash lost the acknowledged result. Raises on any violation."""
    stack.stop_postgres()
    stack.start_postgres(unsafe_fast=True, settings={"wal_writer_delay": "10s"})
    watch = AckWatch(stack.kafka_bootstrap)
    try:
        site = create_site(api, f"chaos-lost-ack-{attempt}")
        # Two or three drafts, all released at once (in-flight window 4): the lost result is not the stage's
        # last, so nothing else would ever settle its batch. Stages 5 and 6 off: the run ends with stage 4.
        import_keywords(api, site, keyword_set(3, 2))
        configure(api, site, stage_enabled={"5": False, "6": False})
        slow_provider(fake, 300)
        await watch.start()
        run_id = str(start_run(api, site)["run_id"])
        t0 = time.monotonic()
        acked = await watch.next_acknowledged(run_id, STAGE, timeout=240)
        stack.kill_postgres()  # right after the acknowledgement
        killed_at = datetime.now(UTC)
        t_kill = time.monotonic()
        kill_point = f"stage {STAGE} result acknowledged, {time.monotonic() - t0:.1f} s in"
        await watch.stop()
        t_restart = time.monotonic()
        stack.start_postgres(unsafe_fast=False)  # the loss has happened; durable from here on
        t_up = time.monotonic()

        lost = await batch_status(chaos_engine, acked.command_id) == "released"
        stage_work = max(r.seconds for _, _, r in watch.seen)
        bound = SILENCE_SECONDS + stage_work + SLACK_SECONDS
        state = await wait_run(chaos_engine, run_id, bound)
        status, stage = state.status, state.stage
        recovery = time.monotonic() - t_up if status != "running" else None
        async with chaos_engine.connect() as conn:
            violations = await check_run(conn, run_id, media_root=stack.media_dir)
        name = "postgres-lost-ack" if lost else "postgres-lost-ack (commit survived)"
        activity = api.get(f"/runs/{run_id}/activity", params={"limit": 500}).json()
        if any("holds no output for them" in line["message"] for line in activity):
            name += " + a worker's commit lost"  # its result came, its output did not: asked again (lost_output)
        chaos_outcomes.append(
            Outcome(
                name, attempt, kill_point, t_restart - t_kill, t_up - t_restart, recovery, status, violations, bound
            )
        )  # fmt: skip
        if status != "completed":
            view = api.get(f"/runs/{run_id}").json()
            processing = api.get(f"/sites/{site}/processing").json()
            raise AssertionError(
                f"run {run_id} is {status} at stage {stage} {bound:.0f}s after PostgreSQL came back "
                f"(silence timeout {SILENCE_SECONDS}s + stage work {stage_work:.1f}s + {SLACK_SECONDS:.0f}s); "
                f"batch {acked.command_id} (stage {STAGE}, seq {acked.batch_seq}), whose result was acknowledged "
                f"{'and then lost' if lost else '(the commit survived)'}, is "
                f"{await batch_status(chaos_engine, acked.command_id)}.\n"
                f"in flight: {processing.get('batches')}\nviolations: {[str(v) for v in violations]}\nrun: {view}"
            )
        found = "\n".join(map(str, violations))
        assert violations == [], f"{found}\n{await evidence(chaos_engine, run_id, acked, killed_at)}"
        return lost
    finally:
        await watch.stop()
        stack.stop_postgres()
        stack.start_postgres(unsafe_fast=False)  # the rest of the suite runs durable, whatever happened here
