"""Thin Kafka handlers of the orchestrator: stage results (in groups) and upstream keyword batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.orchestrator.errors import ProblemError
from services.orchestrator.grouping import Item, ResultGroups
from services.orchestrator.runs.results import RESULTS_CONSUMER
from services.orchestrator.runs.service import RunService
from shared.consume import Record, bounded, dead_letter_record, parse_record, records_of
from shared.contracts import KeywordBatchIngested, StageResult
from shared.runtime import Runtime
from shared.topics import KEYWORDS_INGEST_DLQ, RESULTS_DLQ

Handler = Callable[[KafkaMessage], Awaitable[None]]
RESULTS = RESULTS_CONSUMER  # one name for the attempt counts and the inbox rows of results
INGEST = "orchestrator.ingest"


def make_results_handler(rt: Runtime, runs: RunService) -> Handler:
    # On a run's path: the sessions without a pre-ping per checkout (a group checks out three or more).
    groups = ResultGroups(rt.broker, rt.hot_sessions, runs.over(rt.hot_sessions), RESULTS, RESULTS_DLQ)

    async def on_stage_results(msg: KafkaMessage) -> None:
        items = []
        for record in records_of(msg):
            result = await parse_record(rt.broker, rt.hot_sessions, RESULTS, record, StageResult, RESULTS_DLQ)
            if result is not None:  # an unparsable record is dead-lettered with the reason
                items.append(Item(record, result))
        await groups.handle(items)

    return on_stage_results


def make_ingest_handler(rt: Runtime, runs: RunService) -> Handler:
    async def on_keyword_batch(msg: KafkaMessage) -> None:
        record = Record.of(msg)
        batch = await parse_record(rt.broker, rt.sessions, INGEST, record, KeywordBatchIngested, KEYWORDS_INGEST_DLQ)
        if batch is None:
            return

        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, KEYWORDS_INGEST_DLQ, record, reason, key=batch.site_id.encode())

        async def run() -> None:
            try:
                await runs.ingest(batch)
            except ProblemError as exc:  # unknown site, another account's site, unstorable text
                await park(exc.detail)

        await bounded(rt.sessions, INGEST, batch.message_id, run, park)

    return on_keyword_batch
