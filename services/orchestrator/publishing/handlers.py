"""Thin Kafka handlers of the publisher's reports: PublishResult and PublicationStatusChanged onto the schedule.

Unparseable records are dead-lettered with the reason; each message is recorded once (inbox) inside bounded
attempts, like the stage results (shared.consume).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.orchestrator.publishing.results import RESULTS_CONSUMER, STATUS_CONSUMER
from services.orchestrator.publishing.service import PublishingService
from shared.consume import Record, bounded, dead_letter_record, parse_record
from shared.contracts import PublicationStatusChanged, PublishResult
from shared.runtime import Runtime
from shared.topics import PUBLISH_RESULTS_DLQ

Handler = Callable[[KafkaMessage], Awaitable[None]]


def make_publish_result_handler(rt: Runtime, publishing: PublishingService) -> Handler:
    async def on_publish_result(msg: KafkaMessage) -> None:
        record = Record.of(msg)
        result = await parse_record(
            rt.broker, rt.sessions, RESULTS_CONSUMER, record, PublishResult, PUBLISH_RESULTS_DLQ
        )
        if result is None:
            return

        async def run() -> None:
            await publishing.on_result(result)

        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, PUBLISH_RESULTS_DLQ, record, reason)

        await bounded(rt.sessions, RESULTS_CONSUMER, result.message_id, run, park)

    return on_publish_result


def make_publication_status_handler(rt: Runtime, publishing: PublishingService) -> Handler:
    async def on_publication_status(msg: KafkaMessage) -> None:
        record = Record.of(msg)
        event = await parse_record(
            rt.broker, rt.sessions, STATUS_CONSUMER, record, PublicationStatusChanged, PUBLISH_RESULTS_DLQ
        )
        if event is None:
            return

        async def run() -> None:
            await publishing.on_status(event)

        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, PUBLISH_RESULTS_DLQ, record, reason)

        await bounded(rt.sessions, STATUS_CONSUMER, event.message_id, run, park)

    return on_publication_status
