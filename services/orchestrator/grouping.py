"""Stage results consumed in groups (issue 13): what the broker has when the consumer asks for more is
handled together, each run's results in one transaction under its run lock, several runs side by side.

Why: applied one at a time, a result cost the orchestrator ~45 ms (attempt count, inbox check, transaction,
count cleared, each its own session) and the run's barrier decided after every one of them, so at batch size
1 the orchestrator, not the model, set the pace. A FastStream batch subscriber hands over every record the
consumer has buffered at once (and the first one alone, without waiting, when results are sparse); this
module turns such a group into two transactions: one that counts an attempt for every record, one per run
that records all of its results, clears the counts and lets the barrier decide once.

Per-record guarantees stay as they were:
- idempotent: each result claims its own inbox row (a duplicate inside a group or across groups is skipped);
- bounded: each record's attempts are counted (in the database, before the work, so a record that kills the
  process counts too); past MAX_ATTEMPTS it is dead-lettered alone;
- a result naming a command this orchestrator never issued is dead-lettered alone, the rest applied;
- a group that fails for another reason is applied again one result per transaction, so one bad record
  fails only itself; an outage (database or broker away) fails the whole group, uncounted, and the group
  is fetched again after a back-off (the subscriber rewinds every partition of the group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import NotFoundError
from services.orchestrator.runs.service import RunService
from shared.consume import MAX_ATTEMPTS, Record, backoff_seconds, bounded, dead_letter_record, is_outage
from shared.contracts import StageResult
from shared.delivery import begin_attempts, drop_attempts_of, note_attempt_failed

log = logging.getLogger(__name__)

# Runs whose groups are applied side by side (each holds a database connection while it works).
PARALLEL_RUNS = 4


@dataclass(frozen=True)
class Item:
    record: Record
    result: StageResult

    @property
    def key(self) -> str:
        return self.result.message_id


class ResultGroups:
    def __init__(
        self, broker: KafkaBroker, sessions: async_sessionmaker[AsyncSession], runs: RunService, name: str, dlq: str
    ) -> None:
        self._broker = broker
        self._sessions = sessions
        self._runs = runs
        self._name = name
        self._dlq = dlq
        self._slots = asyncio.Semaphore(PARALLEL_RUNS)

    async def handle(self, items: list[Item]) -> None:
        """Settle every item, or raise (after a back-off) for the group to be delivered again."""
        if not items:
            return
        try:
            counts = await begin_attempts(self._sessions, self._name, [i.key for i in items])
            owners = await self._runs.command_runs(sorted({i.result.command_id for i in items}))
        except Exception:  # the database is away: nothing counted or done; the group comes again
            log.exception("%s: cannot start on %d results; trying again", self._name, len(items))
            await asyncio.sleep(backoff_seconds(None))
            raise
        by_run: dict[str, list[Item]] = {}
        for item in items:
            run_id = owners.get(item.result.command_id)
            if run_id is None:
                reason = f"result {item.key} names unknown command {item.result.command_id}"
                await self._one(item, counts, self._parker(item, reason), forget=True)
            else:
                by_run.setdefault(run_id, []).append(item)
        outcomes = await asyncio.gather(
            *(self._group(run_id, group, counts) for run_id, group in by_run.items()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _group(self, run_id: str, items: list[Item], counts: dict[str, tuple[int, str | None]]) -> None:
        async with self._slots:
            fresh = [i for i in items if counts[i.key][0] <= MAX_ATTEMPTS]
            for item in items:
                if counts[item.key][0] > MAX_ATTEMPTS:  # bounded() gives it up and dead-letters it
                    await self._one(item, counts, self._apply_one(run_id, item))
            if not fresh:
                return
            try:
                await self._runs.apply_results(run_id, [i.result for i in fresh], self._settled(fresh))
                return
            except Exception as exc:
                if is_outage(exc):
                    for item in fresh:  # not the records' fault: give the attempts back
                        with contextlib.suppress(Exception):
                            await note_attempt_failed(self._sessions, self._name, item.key, str(exc), counts=False)
                    log.exception("%s: outage while applying %d results of run %s", self._name, len(fresh), run_id)
                    await asyncio.sleep(backoff_seconds(None))
                    raise
                log.warning(
                    "%s: %d results of run %s failed together (%s: %s); applying them one by one",
                    self._name,
                    len(fresh),
                    run_id,
                    type(exc).__name__,
                    str(exc)[:200],
                )
            first: BaseException | None = None
            for item in fresh:
                try:
                    await self._one(item, counts, self._apply_one(run_id, item))
                except Exception as exc:
                    first = first or exc
            if first is not None:
                raise first

    def _settled(self, items: list[Item]) -> Callable[[AsyncSession], Awaitable[None]]:
        async def settled(session: AsyncSession) -> None:
            await drop_attempts_of(session, self._name, [i.key for i in items])

        return settled

    def _parker(self, item: Item, reason: str) -> Callable[[], Awaitable[None]]:
        async def park() -> None:
            await self._park(item, reason)

        return park

    def _apply_one(self, run_id: str, item: Item) -> Callable[[], Awaitable[None]]:
        async def apply() -> None:
            try:
                await self._runs.apply_results(run_id, [item.result], self._settled([item]))
            except NotFoundError as exc:
                await self._park(item, exc.detail)

        return apply

    async def _one(
        self,
        item: Item,
        counts: dict[str, tuple[int, str | None]],
        fn: Callable[[], Awaitable[None]],
        forget: bool = False,
    ) -> None:
        """One record as one bounded attempt, its attempt already counted with the group's. `forget`: clear
        the count after `fn` (applying a result clears it in its own transaction)."""

        async def counted() -> tuple[int, str | None]:
            return counts[item.key]

        async def give_up(reason: str) -> None:
            await self._park(item, reason)

        await bounded(self._sessions, self._name, item.key, fn, give_up, start=counted, forget=forget)

    async def _park(self, item: Item, reason: str) -> None:
        """A result that can never be recorded goes to the dead-letter topic; its batch then meets the
        silence timeout (asked again) and, at worst, its stage deadline, visibly."""
        await dead_letter_record(self._broker, self._dlq, item.record, reason, key=item.result.site_id.encode())
