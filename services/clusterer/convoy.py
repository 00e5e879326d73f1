"""Batches waiting for their turn ride along with the batch whose turn it is (issue 13).

A site's stage-1 batches cluster one after another: each must see the clusters the earlier ones made. At
batch size 20, a 1,500-keyword run was 75 turns in a row, each paying its reads, its assignment, its naming
round and its transaction on the run's critical path. When a batch's turn begins, the batches right behind it
that are already loaded and waiting (same run, same options, up to `service.PASS_KEYWORDS` keywords) are
clustered in the same pass: one read of the site's clusters, one assignment in volume order, the naming calls
side by side, one transaction for the clusters and every batch's result. Each batch still gets its own result
(its items' outcomes and failures, under its own inbox row); the model calls belong to the batch whose turn it
was, which is charged for them.

A batch's turn may begin while the batches received right behind it are still loading their keywords (at a
run's start the first batch has its turn at once, the rest of its fetch a few milliseconds later): the pass
waits for them, up to `LOAD_PATIENCE`, so that the first pass is not a pass of one batch.

Once that transaction committed, the riders are let go (`deliver`: their own deliveries then find their results
recorded) and their turns end, before the next batch's turn begins. A pass that fails before its commit lets
nothing go: the riders keep waiting, for the retry of that batch or for their own turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any

from services.clusterer.repository import KeywordRow
from shared.contracts import StageCommand
from shared.tasks import cancel_and_wait
from shared.turns import Turn
from shared.worker import BatchOutcome

# How long a pass waits for batches already received behind it to finish loading (a keyword read each).
LOAD_PATIENCE = 0.05


@dataclass
class Rider:
    cmd: StageCommand
    keywords: list[KeywordRow]
    already_done: set[int]
    turn: Turn
    carried: asyncio.Future[BatchOutcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Convoy:
    def __init__(self, max_keywords: int) -> None:
        self._max_keywords = max_keywords
        self._waiting: dict[Turn, Rider] = {}
        # Outcomes handed over, per delivery (its turn): a retry inside the rider's own delivery gets the same
        # outcome (and finds its result recorded) instead of a second pass. A new delivery of the command (a
        # re-ask after a database lost the pass's commit) has a new turn and is worked again.
        self._delivered: weakref.WeakKeyDictionary[Turn, BatchOutcome] = weakref.WeakKeyDictionary()
        self._arrival: asyncio.Future[None] | None = None  # resolved when a batch is loaded and waits

    async def wait(self, rider: Rider) -> BatchOutcome | None:
        """None when it is this batch's turn (it clusters, maybe with riders of its own); its outcome when a pass
        ahead of it took it along."""
        done = self._delivered.get(rider.turn)
        if done is not None:  # a retry inside its delivery: the pass recorded its result, nothing to cluster again
            return done
        self._waiting[rider.turn] = rider
        if self._arrival is not None and not self._arrival.done():
            self._arrival.set_result(None)
        own_turn: asyncio.Future[None] = asyncio.ensure_future(rider.turn.wait())
        try:
            either: set[asyncio.Future[Any]] = {own_turn, rider.carried}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting.pop(rider.turn, None)
            await cancel_and_wait(own_turn)
        return rider.carried.result() if rider.carried.done() else None

    def riders_behind(self, turn: Turn, cmd: StageCommand, keywords: int) -> list[Rider]:
        """The waiting batches right behind `turn` that may share its pass, in offset order."""
        return self._scan(turn, cmd, keywords)[0]

    async def riders_for(
        self, turn: Turn, cmd: StageCommand, keywords: int, patience: float = LOAD_PATIENCE
    ) -> list[Rider]:
        """`riders_behind`, once the batches received right behind `turn` have loaded (waiting at most
        `patience` seconds for them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            riders, loading = self._scan(turn, cmd, keywords)
            left = deadline - loop.time()
            if not loading or left <= 0:
                return riders
            if self._arrival is None or self._arrival.done():
                self._arrival = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._arrival), left)

    def _scan(self, turn: Turn, cmd: StageCommand, keywords: int) -> tuple[list[Rider], bool]:
        """(riders, whether they stop at a batch received but not loaded yet)."""
        riders: list[Rider] = []
        for behind in turn.behind():
            rider = self._waiting.get(behind)
            if rider is None:
                # not loaded yet: what comes after it must wait for it (a carried one has left the queue)
                return riders, True
            if rider.cmd.run_id != cmd.run_id or rider.cmd.options != cmd.options:
                break
            keywords += len(rider.keywords)
            if keywords > self._max_keywords:
                break
            riders.append(rider)
        return riders, False

    def deliver(self, riders: list[Rider], outcomes: list[BatchOutcome]) -> None:
        """The pass committed, the riders' results with it: each rider gets its outcome and leaves the key's queue."""
        for rider, outcome in zip(riders, outcomes, strict=True):
            self._delivered[rider.turn] = outcome
            rider.turn.end()
            if not rider.carried.done():
                rider.carried.set_result(outcome)
