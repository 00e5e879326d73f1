"""`/metrics` of one process: prometheus_client's own HTTP server on the metrics port, plus the figures that
are read when scraped (outbox backlog from the database, consumer lag from the broker).

Why a port of its own, also for the orchestrator: scrapers carry no API key, and the figures span every
account, so they do not belong on the authenticated API. The server is prometheus_client's threaded WSGI
server (`start_http_server`): no second ASGI server and no signal handling next to FastStream's or uvicorn's.
Scrapes run in its threads; the database and broker are read on the service's event loop (the collector
hands the read over and waits, bounded), at most once per `metrics_cache_seconds` whoever scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import utcnow
from shared.db.models import OutboxMessage
from shared.delivery import lane_producers
from shared.metrics.families import FIGURE_FAILURES
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# A scrape waits at most this long for fresh figures; then it is answered with what is known.
READ_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Backlog:
    producer: str
    unpublished: int
    parked: int
    oldest_unpublished: datetime | None


@dataclass(frozen=True)
class Lag:
    topic: str
    partition: int
    lag: int


class ScrapeFigures(Collector):
    """Outbox backlog of this process's producers (its own and its lanes', shared.delivery.LANES) and lag of its
    consumer group, read on scrape (cached)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bootstrap: str,
        producers: list[str],
        group: str,
        cache: float,
    ) -> None:
        self._sessions = sessions
        self._bootstrap = bootstrap
        self.producers = producers
        self.group = group
        self._cache = cache
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._read_at = float("-inf")
        self._backlog: list[Backlog] | None = None
        self._lags: list[Lag] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ reading (on the service's loop)
    async def refresh(self) -> None:
        assert self._lock is not None
        async with self._lock:  # scrapes at the same moment share one read
            if time.monotonic() - self._read_at < self._cache:
                return
            self._backlog = await self._read("outbox", self._read_backlog())
            self._lags = await self._read("consumer_lag", self._read_lag())
            self._read_at = time.monotonic()

    async def _read(self, figure: str, reading: Coroutine[Any, Any, T]) -> T | None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                return await reading
        except Exception as exc:  # a figure that cannot be read is left out, never a failed scrape
            FIGURE_FAILURES.labels(figure=figure).inc()
            log.warning("metrics: cannot read %s: %s: %s", figure, type(exc).__name__, exc)
            return None

    async def _read_backlog(self) -> list[Backlog]:
        unpublished = (OutboxMessage.published_at.is_(None)) & (OutboxMessage.parked_at.is_(None))
        mine = OutboxMessage.producer.in_(self.producers)
        async with self._sessions() as session:
            # Two statements so each uses its partial index (ix_outbox_unpublished, ix_outbox_parked).
            waiting = {
                producer: (int(count), oldest)
                for producer, count, oldest in await session.execute(
                    select(OutboxMessage.producer, func.count(), func.min(OutboxMessage.created_at))
                    .where(mine, unpublished)
                    .group_by(OutboxMessage.producer)
                )
            }
            parked: dict[str, int] = {
                producer: int(count)
                for producer, count in await session.execute(
                    select(OutboxMessage.producer, func.count())
                    .where(OutboxMessage.parked_at.is_not(None), mine)
                    .group_by(OutboxMessage.producer)
                )
            }
        return [
            Backlog(p, waiting.get(p, (0, None))[0], parked.get(p, 0), waiting.get(p, (0, None))[1])
            for p in self.producers
        ]

    async def _read_lag(self) -> list[Lag]:
        from shared.inspection.lag import consumer_lag  # the inspection package imports the delivery core

        (group,) = await consumer_lag(self._bootstrap, groups=[self.group])
        return [Lag(p.topic, p.partition, p.lag) for p in group.partitions if p.lag is not None]

    # ------------------------------------------------------------------ collecting (in a scrape's thread)
    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families(None, None)  # registering must not read the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        loop = self._loop
        if loop is not None and not loop.is_closed() and not _on(loop):
            try:
                asyncio.run_coroutine_threadsafe(self.refresh(), loop).result(READ_TIMEOUT_SECONDS * 2 + 1)
            except Exception as exc:  # the loop is busy or closing: answer with what is known
                log.warning("metrics: figures not refreshed: %s: %s", type(exc).__name__, exc)
        yield from self._families(self._backlog, self._lags)

    def _families(self, backlog: list[Backlog] | None, lags: list[Lag] | None) -> list[GaugeMetricFamily]:
        unpublished = GaugeMetricFamily(
            "contentline_outbox_unpublished", "Outbox rows waiting for the relay, per producer", labels=["producer"]
        )
        parked = GaugeMetricFamily(
            "contentline_outbox_parked",
            "Outbox rows the broker refused for good, parked for an operator (GET /api/v1/ops/outbox/parked)",
            labels=["producer"],
        )
        oldest = GaugeMetricFamily(
            "contentline_outbox_oldest_unpublished_seconds",
            "Age of the oldest outbox row waiting for the relay (0 when none waits)",
            labels=["producer"],
        )
        lag = GaugeMetricFamily(
            "contentline_consumer_lag",
            "Records behind the partition's end: end offset minus the group's committed offset",
            labels=["group", "topic", "partition"],
        )
        for one in backlog or []:
            age = (utcnow() - one.oldest_unpublished).total_seconds() if one.oldest_unpublished else 0.0
            unpublished.add_metric([one.producer], one.unpublished)
            parked.add_metric([one.producer], one.parked)
            oldest.add_metric([one.producer], max(age, 0.0))
        for row in lags or []:
            lag.add_metric([self.group, row.topic, str(row.partition)], row.lag)
        return [unpublished, parked, oldest, lag]


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from `loop`'s own thread: waiting for it there would deadlock."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class MetricsEndpoint:
    """Serves the default registry on `metrics_host:metrics_port` while the service runs (nothing when unset)."""

    def __init__(self, name: str, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._host = settings.metrics_host
        self._port = settings.metrics_port
        # Every service's consumer group is named after it (shared.worker_app, the orchestrator, webhooks).
        self.figures = ScrapeFigures(
            sessions, settings.kafka_bootstrap, producers=lane_producers(name), group=f"contentline-{name}",
            cache=settings.metrics_cache_seconds,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        if self._port is None or self._server is not None:
            return
        self.figures.bind(asyncio.get_running_loop())
        REGISTRY.register(self.figures)
        try:
            self._server, self._thread = start_http_server(self._port, addr=self._host)
        except OSError as exc:  # the pipeline runs on without /metrics; the reason is in the log
            REGISTRY.unregister(self.figures)
            log.error("metrics: cannot serve /metrics on %s:%s: %s", self._host, self._port, exc)
            return
        log.info("metrics: /metrics on http://%s:%s", self._host, self._port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)  # a scrape in progress may still need the loop
        server.server_close()
        REGISTRY.unregister(self.figures)
