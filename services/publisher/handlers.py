"""Thin Kafka handler: parse (or dead-letter) a publish command and publish its draft exactly once in effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.annotations import KafkaMessage

from services.publisher.service import PublisherService
from shared.consume import Record, bounded, parse_record
from shared.contracts import PublishCommand
from shared.runtime import Runtime
from shared.topics import PUBLISH_DLQ


def make_handler(rt: Runtime, service: PublisherService) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def on_publish_command(msg: KafkaMessage) -> None:
        cmd = await parse_record(rt.broker, rt.sessions, rt.name, Record.of(msg), PublishCommand, PUBLISH_DLQ)
        if cmd is None:
            return

        async def run() -> None:
            await service.handle(cmd)

        async def give_up(reason: str) -> None:
            await service.give_up(cmd, reason)

        # A site that stays down (PublishDeferred) is retried after a back-off, then the draft fails with why.
        await bounded(rt.sessions, rt.name, cmd.message_id, run, give_up)

    return on_publish_command
