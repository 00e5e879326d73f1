"""Thin Kafka handlers of the orchestrator: stage results and upstream keyword batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.orchestrator.errors import NotFoundError, ProblemError
from services.orchestrator.runs.service import RunService
from shared.consume import Record, bounded, dead_letter_record, parse_record
from shared.contracts import KeywordBatchIngested, StageResult
from shared.runtime import Runtime
from shared.topics import KEYWORDS_INGEST_DLQ, RESULTS_DLQ

Handler = Callable[[KafkaMessage], Awaitable[None]]
RESULTS = "orchestrator.results"
INGEST = "orchestrator.ingest"


def make_result_handler(rt: Runtime, runs: RunService) -> Handler:
    async def on_stage_result(msg: KafkaMessage) -> None:
        record = Record.of(msg)
        result = await parse_record(rt.broker, rt.sessions, RESULTS, record, StageResult, RESULTS_DLQ)
        if result is None:
            return

        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, RESULTS_DLQ, record, reason, key=result.site_id.encode())

        async def run() -> None:
            try:
                await runs.on_result(result)
            except NotFoundError as exc:
                await park(exc.detail)

        # A result that can never be recorded is parked; its batch then meets its stage deadline, visibly.
        await bounded(rt.sessions, RESULTS, result.message_id, run, park)

    return on_stage_result


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
