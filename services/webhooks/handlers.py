"""Thin Kafka handlers: parse a source message (or dead-letter it), map it, queue its deliveries once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka.annotations import KafkaMessage

from services.webhooks.events import WebhookEvent
from services.webhooks.service import WebhookService
from services.webhooks.sources import Source
from shared.consume import Record, bounded, dead_letter_record, parse_record
from shared.runtime import Runtime
from shared.topics import WEBHOOKS_DLQ

Handler = Callable[[KafkaMessage], Awaitable[None]]


def consumer_name(source: Source[Any]) -> str:
    # Starts with the service name, so the runtime's retention prunes these inbox rows (shared.kafka).
    return f"webhooks.{source.name}"


def make_handler(rt: Runtime, service: WebhookService, source: Source[Any]) -> Handler:
    consumer = consumer_name(source)

    async def on_source_message(msg: KafkaMessage) -> None:
        record = Record.of(msg)
        message = await parse_record(rt.broker, rt.sessions, consumer, record, source.model, WEBHOOKS_DLQ)
        if message is None:
            return
        try:
            events: list[WebhookEvent] | None = source.to_events(message)  # pure and cheap
        except Exception:  # mapped again below, where a failure counts as an attempt and ends dead-lettered
            events = None
        if events is not None and not await service.wanted(events):
            return

        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, WEBHOOKS_DLQ, record, reason)

        async def run() -> None:
            # Only rows are written here, nothing waits on a receiver.
            await service.enqueue(
                consumer, message.message_id, events if events is not None else source.to_events(message)
            )

        await bounded(rt.sessions, consumer, message.message_id, run, park)

    return on_source_message
