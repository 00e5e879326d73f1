"""Thin Kafka handlers of the orchestrator: stage results and upstream keyword batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.orchestrator.errors import NotFoundError, ProblemError
from services.orchestrator.runs.service import RunService
from shared.consume import bounded, parse_or_dead_letter
from shared.contracts import KeywordBatchIngested, StageResult
from shared.kafka import dead_letter
from shared.runtime import Runtime
from shared.topics import KEYWORDS_INGEST, KEYWORDS_INGEST_DLQ, RESULTS_DLQ, STAGE_RESULTS

Handler = Callable[[KafkaMessage], Awaitable[None]]


def make_result_handler(rt: Runtime, runs: RunService) -> Handler:
    async def on_stage_result(msg: KafkaMessage) -> None:
        result = await parse_or_dead_letter(rt.broker, msg, StageResult, RESULTS_DLQ)
        if result is None:
            return

        async def park(reason: str) -> None:
            await dead_letter(rt.broker, RESULTS_DLQ, msg.body, result.site_id.encode(), reason, STAGE_RESULTS)

        async def run() -> None:
            try:
                await runs.on_result(result)
            except NotFoundError as exc:
                await park(exc.detail)

        # A result that can never be recorded is parked; its batch then meets its stage deadline, visibly.
        await bounded(rt.sessions, "orchestrator.results", result.message_id, run, park)

    return on_stage_result


def make_ingest_handler(rt: Runtime, runs: RunService) -> Handler:
    async def on_keyword_batch(msg: KafkaMessage) -> None:
        batch = await parse_or_dead_letter(rt.broker, msg, KeywordBatchIngested, KEYWORDS_INGEST_DLQ)
        if batch is None:
            return

        async def park(reason: str) -> None:
            await dead_letter(rt.broker, KEYWORDS_INGEST_DLQ, msg.body, batch.site_id.encode(), reason, KEYWORDS_INGEST)

        async def run() -> None:
            try:
                await runs.ingest(batch)
            except ProblemError as exc:  # unknown site, another account's site, unstorable text
                await park(exc.detail)

        await bounded(rt.sessions, "orchestrator.ingest", batch.message_id, run, park)

    return on_keyword_batch
