"""Consumers poll an idle broker slowly and a busy one quickly (issue 13).

aiokafka keeps one fetch in flight per broker, for the assigned partitions that have nothing buffered. A
partition whose buffered records were just used up is not part of that fetch, so its next record can wait on
the broker for the whole fetch wait: that is why our consumers use a wait of tens of milliseconds
(`shared.kafka.FETCH_MAX_WAIT_MS`). But a fetch that covers every assigned partition can wait long at no cost
in latency: the broker answers it as soon as any of them has a record. An idle consumer with 25 ms sends 40
fetches a second; the broker took 15 % of a core on an idle stack, and during a run the consumers of the
stages not running are idle too.

So a fetch that names every assigned partition waits `IDLE_FETCH_MAX_WAIT_MS`; one that leaves a partition
out (records of it are buffered, or it is paused or resetting) keeps the consumer's own `fetch_max_wait_ms`.
This replaces aiokafka's `Fetcher` (private API: aiokafka is pinned to 0.14) for every consumer of the process;
should its internals change, the fetches go out as aiokafka built them (with a warning), and
tests/integration/test_kafka_fetch_wait.py, which pins the behaviour against the real broker, fails.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import aiokafka.consumer.consumer as _consumer_module
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.protocol.fetch import FetchRequest

IDLE_FETCH_MAX_WAIT_MS = 500

log = logging.getLogger(__name__)


@functools.cache
def _warn_once() -> None:
    log.warning("aiokafka's fetcher is not what shared/kafka_fetch.py was written for: consumers keep their own wait")


class IdleAwareFetcher(Fetcher):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's fetcher; a fetch over every assigned partition waits `IDLE_FETCH_MAX_WAIT_MS` on the broker."""

    last_wait_ms: int | None = None  # the wait of the last fetch built (tests)

    def _get_actions_per_node(self, assignment: Any) -> Any:
        actions = super()._get_actions_per_node(assignment)
        try:
            fetch_requests, *rest = actions
            idle_wait = IDLE_FETCH_MAX_WAIT_MS  # read at each fetch: tests change it
            if fetch_requests and idle_wait > self._fetch_max_wait_ms:
                named = sum(len(parts) for _, request in fetch_requests for _, parts in request.topics)
                if named == len(assignment.tps):
                    fetch_requests = [
                        (node_id, self._with_wait(request, idle_wait)) for node_id, request in fetch_requests
                    ]
            if fetch_requests:
                self.last_wait_ms = max(request._max_wait_ms for _, request in fetch_requests)
            return (fetch_requests, *rest)
        except (AttributeError, TypeError, ValueError):  # aiokafka's internals changed: its own fetches, as built
            _warn_once()
            return actions

    def _with_wait(self, request: FetchRequest, wait_ms: int) -> FetchRequest:
        return FetchRequest(
            wait_ms,
            self._fetch_min_bytes,
            self._fetch_max_bytes,
            self._isolation_level,
            request.topics,
            rack_id=self._client_rack or "",
        )


def install() -> None:
    """Make every AIOKafkaConsumer of this process use `IdleAwareFetcher` (idempotent)."""
    _consumer_module.Fetcher = IdleAwareFetcher
