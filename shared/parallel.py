"""Several records of one partition worked at once, offsets committed in order (issue 13).

Why this exists. FastStream 0.7 offers, for a Kafka subscriber:
- `max_workers` with AckPolicy.ACK_FIRST: concurrent, but it commits before the work (at-most-once);
- `max_workers` with any other policy: one consumer per worker in the group, each still handling one
  record at a time per partition (and all of one site's commands used to share one partition);
- `batch=True`: a batch is committed when its slowest record is done, and the next batch waits for it.
None works on several records of one partition while committing only finished work, so this module adds
that on top of an ordinary FastStream subscriber. FastStream still owns the consumer (config, security,
fetch loop, logging); aiokafka provides pause/resume, explicit-offset commits and the rebalance listener.

How it works:
- The subscriber uses AckPolicy.MANUAL (FastStream commits nothing) and `submit` as its handler: `submit`
  starts one task per record and returns, so the next record is fetched at once.
- In-order commits: per partition the pool remembers the offsets it handed out; the committed position is
  the first offset not finished yet (a Kafka commit means "everything below is done"). After a crash only
  the unfinished records come back, plus any that finished behind an unfinished one (the inbox answers
  those from what it stored: no work is repeated).
- Bounded: at most `max_in_flight` records between fetch and commit. At that mark every assigned partition
  is paused; the consumer keeps polling (heartbeats and max_poll_interval stay satisfied) and resumes when
  a task finishes.
- A handler that raises is tried again in its own task after `retry_seconds`: what NACK_ON_ERROR's
  seek-back did, without rewinding the partition over the records behind it. Handlers count their attempts
  in the database (shared.consume.bounded), so a poisonous record is settled within bounded attempts.
- Key order (optional): records with the same Kafka key take turns in offset order. A record's turn is
  taken when the pool accepts it; by default the handler starts when the turn comes and the turn ends
  with the task. With `handler_waits`, the handler starts at once and calls `wait_for_turn()` where
  the ordered part begins and `end_turn()` once it is committed: what comes before (an attempt
  counted, inputs loaded) overlaps the previous record's ordered part (issue 13: the clusterer).
- Rebalance: aiokafka rebalances eagerly (every partition is revoked before any is assigned). On revoke
  the pool waits up to `revoke_seconds` for the revoked partitions' tasks, commits what finished and
  cancels the rest: those are redelivered to the next owner (an unfinished record committed nothing; its
  transaction rolls back). The subscriber's rebalance timeout must exceed that wait.
- Shutdown: `drain()` pauses fetching and refuses new records, waits up to `drain_seconds` for the tasks,
  cancels what is left and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka.message import KafkaMessage

from shared.consume import Record
from shared.tasks import cancel_and_wait
from shared.turns import CURRENT_TURN, KeyTurns, Turn

log = logging.getLogger(__name__)

Handler = Callable[[Record], Awaitable[None]]


class OrderedOffsets:
    """The offsets of one partition handed out, in order; `position` is where a commit may point."""

    def __init__(self) -> None:
        self._pending: OrderedDict[int, bool] = OrderedDict()
        self.position: int | None = None

    def add(self, offset: int) -> None:
        self._pending[offset] = False

    def finish(self, offset: int) -> bool:
        """Mark `offset` done; True when the commit position moved."""
        if offset not in self._pending:
            return False
        self._pending[offset] = True
        moved = False
        while self._pending:
            first, done = next(iter(self._pending.items()))
            if not done:
                break
            self._pending.popitem(last=False)
            self.position = first + 1
            moved = True
        return moved

    def __len__(self) -> int:
        return len(self._pending)


class OrderedCommitPool:
    """A bounded task pool behind one FastStream subscriber; see the module docstring."""

    def __init__(
        self,
        handler: Handler,
        *,
        name: str,
        max_in_flight: int,
        key_ordered: bool = False,
        handler_waits: bool = False,
        retry_seconds: float = 1.0,
        revoke_seconds: float = 45.0,
        drain_seconds: float = 25.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._handler = handler
        self._name = name
        self._max = max_in_flight
        self._turns = KeyTurns() if key_ordered else None
        self._handler_waits = handler_waits
        self._retry = retry_seconds
        self._revoke = revoke_seconds
        self._drain = drain_seconds
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: dict[TopicPartition, OrderedOffsets] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._dirty: set[TopicPartition] = set()
        self._kick = asyncio.Event()
        self._room = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._paused = False
        self._closing = False
        self.listener = _Listener(self)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def committed(self) -> dict[TopicPartition, int]:
        return dict(self._committed)

    # ------------------------------------------------------------------ intake
    async def submit(self, msg: KafkaMessage) -> None:
        """The subscriber's handler: start the record's task and return at once."""
        if self._closing:
            return  # never tracked, so never committed: the next owner of the partition gets it
        self._consumer = cast(AIOKafkaConsumer, msg.consumer)
        while self._in_flight >= self._max:  # only a record fetched just before the pause waits here
            self._room.clear()
            await self._room.wait()
            if self._closing:
                return
        record = Record.of(msg)
        tp = TopicPartition(record.topic, record.partition)
        self._offsets.setdefault(tp, OrderedOffsets()).add(record.offset)
        self._in_flight += 1
        label = f"{self._name}:{record.topic}[{record.partition}]@{record.offset}"
        turn = self._turns.take(record.key) if self._turns is not None else None
        task = asyncio.create_task(self._work(record, turn), name=label)
        self._tasks.setdefault(tp, set()).add(task)
        task.add_done_callback(lambda t: self._settle(tp, record.offset, t))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_loop(), name=f"{self._name}:commits")
        if self._in_flight >= self._max:
            self._pause(self._assignment())

    async def _work(self, record: Record, turn: Turn | None) -> None:
        try:
            if turn is not None and not self._handler_waits:
                await turn.wait()
            CURRENT_TURN.set(turn)  # this task's own context
            while True:
                try:
                    await self._handler(record)
                    return
                except Exception as exc:  # the handler logged and counted it; try again, never in a hot loop
                    log.warning(
                        "%s: %s[%d]@%d not settled (%s); trying it again in %.1fs",
                        self._name,
                        record.topic,
                        record.partition,
                        record.offset,
                        type(exc).__name__,
                        self._retry,
                    )
                    await asyncio.sleep(self._retry)
        finally:
            if turn is not None:
                turn.end()

    def _settle(self, tp: TopicPartition, offset: int, task: asyncio.Task[None]) -> None:
        self._in_flight -= 1
        self._tasks.get(tp, set()).discard(task)
        if not task.cancelled() and task.exception() is None:
            offsets = self._offsets.get(tp)
            if offsets is not None and offsets.finish(offset):
                self._dirty.add(tp)
                self._kick.set()
        if self._paused and not self._closing and self._in_flight < self._max:
            self._resume()
        self._room.set()

    # ------------------------------------------------------------------ flow control
    def _assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def _pause(self, partitions: Iterable[TopicPartition]) -> None:
        if self._consumer is None:
            return
        with contextlib.suppress(KafkaError):  # mid-rebalance: the assignment callback pauses again
            self._consumer.pause(*partitions)
            self._paused = True

    def _resume(self) -> None:
        if self._consumer is None:
            return
        with contextlib.suppress(KafkaError):
            self._consumer.resume(*self._assignment())
            self._paused = False

    # ------------------------------------------------------------------ commits
    async def _commit_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            await self._commit(set(self._dirty))

    async def _commit(self, partitions: set[TopicPartition]) -> None:
        self._dirty -= partitions
        offsets: dict[TopicPartition, int] = {}
        for tp in partitions:
            tracked = self._offsets.get(tp)
            if tracked is not None and tracked.position is not None and tracked.position > self._committed.get(tp, -1):
                offsets[tp] = tracked.position
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # the group moved on: the next owner gets these again, the inbox answers them
            log.warning("%s: commit of %s failed: %s", self._name, offsets, exc)
            return
        self._committed.update(offsets)

    # ------------------------------------------------------------------ rebalance and shutdown
    async def _finish(self, partitions: set[TopicPartition], seconds: float, why: str) -> None:
        """Wait up to `seconds` for these partitions' tasks, cancel the rest, commit what finished."""
        tasks = {t for tp in partitions for t in self._tasks.get(tp, set())}
        if tasks:
            log.info("%s: %s; waiting up to %.0fs for %d record(s) in flight", self._name, why, seconds, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("%s: %d unfinished record(s) left for redelivery", self._name, len(pending))
        await self._commit(partitions & set(self._offsets))

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        await self._finish(revoked, self._revoke, "partitions revoked")
        for tp in revoked:
            self._offsets.pop(tp, None)
            self._tasks.pop(tp, None)
            self._committed.pop(tp, None)
            self._dirty.discard(tp)
        self._paused = False  # a pause belongs to an assignment; the new one starts unpaused

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        if self._closing or self._in_flight >= self._max:
            self._pause(assigned)

    async def drain(self) -> None:
        """Graceful shutdown: take nothing new, let in-flight work finish (bounded), commit it."""
        self._closing = True
        self._room.set()
        self._pause(self._assignment())
        await self._finish(set(self._tasks) | set(self._offsets), self._drain, "shutting down")
        await cancel_and_wait(self._committer)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, pool: OrderedCommitPool) -> None:
        self._pool = pool

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._pool._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._pool._assigned(set(assigned))
