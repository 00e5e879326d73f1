"""What every service process holds: settings, DB sessions, the Kafka broker, the outbox relay, the AI client."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.ai import AiClient
from shared.db.session import make_engine, make_sessionmaker
from shared.delivery import LANES, Exclusive, Outbox, lane_producers
from shared.kafka import OutboxRelay, ensure_topics, make_broker
from shared.logs import setup_logging
from shared.metrics.endpoint import MetricsEndpoint
from shared.settings import Settings, get_settings

LANE_SETTLE_SECONDS = 0.1


@dataclass
class Runtime:
    name: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # The consumers' and relays' sessions: without a pre-ping round trip per checkout (issue 13). The same as
    # `sessions` in a worker; a process that also serves requests (pre_ping=True) has a second, smaller pool.
    hot_engine: AsyncEngine
    hot_sessions: async_sessionmaker[AsyncSession]
    broker: KafkaBroker
    relays: list[OutboxRelay]  # one per producer name: the service's own and its lanes' (shared.delivery.LANES)
    outbox: Outbox
    ai: AiClient
    metrics: MetricsEndpoint
    exclusive: Exclusive = field(default_factory=Exclusive)

    @classmethod
    def create(cls, name: str, settings: Settings | None = None, *, pre_ping: bool = True) -> Runtime:
        """`pre_ping=False` for a process whose database use is all on the consumers' hot path (workers):
        a dropped connection then fails one attempt as an outage instead of costing a round trip each time.
        With pre_ping=True (a process that serves requests too) the relays and the consumers that ask for
        `hot_sessions` still go without it, on a pool of their own."""
        settings = settings or get_settings()
        setup_logging(settings.log_level, name)
        engine = make_engine(settings.database_url, pre_ping=pre_ping)
        sessions = make_sessionmaker(engine)
        hot_engine = make_engine(settings.database_url, pool_size=5, pre_ping=False) if pre_ping else engine
        hot_sessions = make_sessionmaker(hot_engine) if pre_ping else sessions
        broker = make_broker(settings.kafka_bootstrap, client_id=f"contentline-{name}", service=name)
        own, *lanes = lane_producers(name)
        relays = [OutboxRelay(broker, hot_sessions, producer=own, poll_seconds=settings.outbox_poll_seconds)]
        # A lane's relay is woken by every commit of the process; most added nothing to it, and its topics are
        # not on a run's path: an empty round lets LANE_SETTLE_SECONDS pass before the next.
        relays += [
            OutboxRelay(
                broker,
                hot_sessions,
                producer=lane,
                poll_seconds=settings.outbox_poll_seconds,
                settle_seconds=LANE_SETTLE_SECONDS,
            )
            for lane in lanes
        ]

        def wake() -> None:
            for relay in relays:
                relay.wake()

        return cls(
            name=name,
            settings=settings,
            engine=engine,
            sessions=sessions,
            hot_engine=hot_engine,
            hot_sessions=hot_sessions,
            broker=broker,
            relays=relays,
            outbox=Outbox(name, on_commit=wake, lanes=LANES),
            ai=AiClient(settings),
            metrics=MetricsEndpoint(name, settings, sessions),
        )

    async def on_startup(self) -> None:
        created = await ensure_topics(self.settings.kafka_bootstrap, self.settings.topic_partitions)
        if created:
            logging.getLogger(self.name).info("created topics: %s", ", ".join(created))

    async def after_startup(self) -> None:
        for relay in self.relays:
            relay.start()
        await self.metrics.start()
        if self.settings.ready_file is not None:
            write_ready_file(self.settings.ready_file, self.settings.instance_token or "")

    async def on_shutdown(self) -> None:
        for relay in self.relays:
            await relay.stop()
        await self.metrics.stop()
        await self.ai.close()
        await self.engine.dispose()
        if self.hot_engine is not self.engine:
            await self.hot_engine.dispose()


def write_ready_file(path: Path, token: str) -> None:
    """Tell the launcher this process is up (consumers and relay started): the start's token, written
    whole (temp file + rename) so the launcher never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(token)
    os.replace(tmp, path)
