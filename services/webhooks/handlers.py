"""Thin Kafka handlers: parse a source message (or dead-letter it), map it, queue its deliveries once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka.annotations import KafkaMessage

from services.webhooks.service import WebhookService
from services.webhooks.sources import Source
from shared.consume import bounded, parse_or_dead_letter
from shared.kafka import dead_letter
from shared.runtime import Runtime
from shared.topics import WEBHOOKS_DLQ

Handler = Callable[[KafkaMessage], Awaitable[None]]


def consumer_name(source: Source[Any]) -> str:
    # Starts with the service name, so the runtime's retention prunes these inbox rows (shared.kafka).
    return f"webhooks.{source.name}"


def make_handler(rt: Runtime, service: WebhookService, source: Source[Any]) -> Handler:
    consumer = consumer_name(source)

    async def on_source_message(msg: KafkaMessage) -> None:
        message = await parse_or_dead_letter(rt.broker, msg, source.model, WEBHOOKS_DLQ)
        if message is None:
            return
        key = msg.raw_message.key if hasattr(msg.raw_message, "key") else None

        async def park(reason: str) -> None:
            await dead_letter(rt.broker, WEBHOOKS_DLQ, msg.body, key, reason, source.topic)

        async def run() -> None:
            # Mapping is pure and cheap; only rows are written here, nothing waits on a receiver.
            await service.enqueue(consumer, message.message_id, source.to_events(message))

        await bounded(rt.sessions, consumer, message.message_id, run, park)

    return on_source_message
