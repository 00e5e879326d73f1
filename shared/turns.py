"""Turns of records that share a Kafka key (shared.parallel's key order), in offset order.

A turn is taken when the pool accepts a record; the first of a key has its turn, the next gets it when that
one ends. The handler of a `handler_waits` pool reaches its own turn through a context variable: it calls
`wait_for_turn()` where its ordered part begins and `end_turn()` once that part is committed (the stage
worker does, after its result transaction). A record whose ordered part an earlier one did along with its own
(the clusterer's riders) has its turn ended by that one: `Turn.end()` of a turn that is not first just leaves
the queue. Kept apart from shared.parallel so the worker flow can use it without importing the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextvars import ContextVar


class Turn:
    """One record's place among the records of its key, taken in offset order when the pool accepts it."""

    def __init__(self, turns: KeyTurns, key: bytes | None) -> None:
        self._turns = turns
        self.key = key
        self.ready = asyncio.Event()
        self.ended = False
        self.began: float | None = None  # perf_counter when the handler went on in its turn

    async def wait(self) -> None:
        """Until the earlier records of the key are done; at once for a turn already over (a retry after the
        ordered part was committed, by this record or by the one that took it along)."""
        if self.ended:
            return
        await self.ready.wait()
        if self.began is None:
            self.began = time.perf_counter()

    def behind(self) -> list[Turn]:
        """The turns of the key after this one, in offset order."""
        return self._turns.behind(self)

    def end(self) -> None:
        """Let the next record of the key go (once; also when this one never had its turn: cancelled)."""
        if not self.ended:
            self.ended = True
            self._turns.remove(self)


class KeyTurns:
    """Per key, the records in offset order; the first one has its turn."""

    def __init__(self) -> None:
        self._queues: dict[bytes | None, deque[Turn]] = {}

    def take(self, key: bytes | None) -> Turn:
        turn = Turn(self, key)
        queue = self._queues.setdefault(key, deque())
        queue.append(turn)
        if len(queue) == 1:
            turn.ready.set()
        return turn

    def behind(self, turn: Turn) -> list[Turn]:
        queue = self._queues.get(turn.key)
        if not queue or turn not in queue:
            return []
        return list(queue)[queue.index(turn) + 1 :]

    def remove(self, turn: Turn) -> None:
        queue = self._queues[turn.key]
        first = queue[0] is turn
        queue.remove(turn)
        if not queue:
            del self._queues[turn.key]
        elif first:
            queue[0].ready.set()


# The turn of the record the current pool task works (None outside a key-ordered pool).
CURRENT_TURN: ContextVar[Turn | None] = ContextVar("contentline_turn", default=None)


async def wait_for_turn() -> None:
    """In a handler of a `handler_waits` pool: wait until the earlier records of this key are done (their
    ordered part committed). Anywhere else, and again once it has the turn, it returns at once."""
    turn = CURRENT_TURN.get()
    if turn is not None:
        await turn.wait()


def current_turn() -> Turn | None:
    """The turn of the record this task works (None outside a key-ordered pool)."""
    return CURRENT_TURN.get()


def turn_began() -> float | None:
    """perf_counter when this record's handler went on in its turn (None: it has not waited for one)."""
    turn = CURRENT_TURN.get()
    return turn.began if turn is not None else None


def end_turn() -> None:
    """The ordered part of this record is committed: the next record of its key may start its own."""
    turn = CURRENT_TURN.get()
    if turn is not None and turn.ready.is_set():
        turn.end()
