"""Thin Kafka handler: the entity events of a batch parsed (or dead-lettered), the ones an active rule wants handed
to the service one by one, each within bounded attempts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.rules.service import RuleService
from shared.consume import Record, bounded, dead_letter_record, parse_record, records_of
from shared.entity_events import EntityEvent
from shared.runtime import Runtime
from shared.topics import RULES_DLQ

# Starts with the service name, so the runtime's retention prunes its attempt rows (shared.kafka).
CONSUMER = "rules.entity-events"

Handler = Callable[[KafkaMessage], Awaitable[None]]


def make_handler(rt: Runtime, service: RuleService) -> Handler:
    async def handle(record: Record, event: EntityEvent) -> None:
        async def park(reason: str) -> None:
            await dead_letter_record(rt.broker, RULES_DLQ, record, reason)

        async def run() -> None:
            # Idempotent without an inbox row: a task is unique per (rule, event id), so a redelivery adds none.
            await service.on_entity_event(event)

        await bounded(rt.sessions, CONSUMER, event.message_id, run, park)

    async def on_entity_events(msg: KafkaMessage) -> None:
        parsed: list[tuple[Record, EntityEvent]] = []
        for record in records_of(msg):
            event = await parse_record(rt.broker, rt.sessions, CONSUMER, record, EntityEvent, RULES_DLQ)
            if event is not None:  # an unparsable record is dead-lettered with the reason
                parsed.append((record, event))
        wanted = await service.concerning_a_rule([event for _, event in parsed])
        for (record, event), wants in zip(parsed, wanted, strict=True):
            if wants:
                await handle(record, event)

    return on_entity_events
