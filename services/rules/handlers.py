"""Thin Kafka handler: parse an entity event (or dead-letter it), hand it to the service within bounded attempts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.rules.service import RuleService
from shared.consume import Record, bounded, dead_letter_record, parse_record
from shared.entity_events import EntityEvent
from shared.runtime import Runtime
from shared.topics import RULES_DLQ

# Starts with the service name, so the runtime's retention prunes its attempt rows (shared.kafka).
CONSUMER = "rules.entity-events"

Handler = Callable[[KafkaMessage], Awaitable[None]]


def make_handler(rt: Runtime, service: RuleService) -> Handler:
    async def on_entity_event(msg: KafkaMessage) -> None:
        record = Record.of(msg)
        event = await parse_record(rt.broker, rt.sessions, CONSUMER, record, EntityEvent, RULES_DLQ)
        if event is None or not await service.concerns_a_rule(event):
            return

        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, RULES_DLQ, record, reason)

        async def run() -> None:
            # Idempotent without an inbox row: a task is unique per (rule, event id), so a redelivery adds none.
            await service.on_entity_event(event)

        await bounded(rt.sessions, CONSUMER, event.message_id, run, park)

    return on_entity_event
