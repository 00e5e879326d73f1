"""Run orchestration: the only place that decides what happens next.

State lives in PostgreSQL, so every decision survives a restart. Each decision runs in one
transaction that locks the run row (`SELECT ... FOR UPDATE`), which serialises result handlers, API
calls, the ticker and the scheduler of any number of orchestrator replicas for one run. Commands and
run events go out through the outbox in that same transaction. Lock order: run, then account.

The engine is split by concern: `start` (plan, estimate, reserve), `barrier` (strict stage order),
`window` (bounded release, budget), `results`, `control` (pause/resume/cancel), `timers`, `schedules`.
This class is its public face; a caller's reads and actions take the caller's account.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.config import RunTarget
from services.orchestrator.errors import ConflictError, NotFoundError, ProblemError
from services.orchestrator.runs import control, figures, liveness, results, schedules, start, timers
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.views import (
    ActivityView,
    BatchInFlight,
    BatchItem,
    BatchWait,
    EstimateView,
    Processing,
    RunHistory,
    RunView,
    TokenUse,
    run_view,
)
from services.orchestrator.runs.window import available_for
from services.orchestrator.safetext import describe_bad_char
from services.orchestrator.sites import service as sites
from shared.contracts import KeywordBatchIngested, RunStatus, Stage, StageResult, utcnow
from shared.db.models import Run, Site, StageBatch
from shared.db.session import autocommit
from shared.delivery import claim_inbox

log = logging.getLogger(__name__)

INGEST_CONSUMER = "orchestrator.ingest"
held_by_active_runs = repo.held_by_active_runs
Settled = Callable[[AsyncSession], Awaitable[None]]
LATE_SWEEP_SECONDS = 30.0
Prepare = Callable[[AsyncSession], Awaitable[None]]


class SiteBusyError(ConflictError):
    """The site already has an active run (one per site): try again once it has ended."""


@dataclass(frozen=True)
class HeldItems:
    """What the site's active run holds: the items of its current stage's unfinished batches."""

    run_id: str
    status: str
    stage: int
    item_ids: frozenset[int]

    def reason(self, what: str) -> str:
        label = Stage(self.stage).label if self.stage else "starting"
        return f"{what} is held by stage {self.stage} ({label}) of run {self.run_id} ({self.status}); wait or cancel it"


async def held_items(session: AsyncSession, site_id: str) -> HeldItems | None:
    """None when the site has no active run (then nothing is held)."""
    run = await repo.active_run(session, site_id)
    if run is None:
        return None
    ids = await repo.unfinished_items(session, run.id, run.current_stage) if run.current_stage else []
    return HeldItems(run.id, run.status, run.current_stage, frozenset(int(i) for i in ids))


class RunService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: Engine,
        *,
        rule_credits: figures.RuleCredits = figures.credits_of_rule_runs,
    ) -> None:
        self._sessions = sessions
        self._engine = engine
        self._rule_credits = rule_credits
        self._next_late_sweep = 0.0

    def over(self, sessions: async_sessionmaker[AsyncSession]) -> RunService:
        """The same engine over other sessions (the results consumer's: no pre-ping per checkout)."""
        return RunService(sessions, self._engine, rule_credits=self._rule_credits)

    # ------------------------------------------------------------------ starting
    async def start_run(self, account_id: str, site_id: str, trigger: str = "manual") -> RunView:
        return await self.start_targeted(account_id, site_id, None, trigger)

    async def start_targeted(
        self,
        account_id: str,
        site_id: str,
        target: RunTarget | None,
        trigger: str = "targeted",
        prepare: Prepare | None = None,
    ) -> RunView:
        """A run over the targeted items only (all pending work when `target` is None), charged like any
        other. `prepare` runs first in the same transaction (e.g. retiring the draft a regeneration
        replaces), so a refused start (402, 409) leaves nothing of it behind."""
        try:
            async with self._sessions.begin() as session:
                site = await sites.site_of(session, account_id, site_id)
                if prepare is not None:
                    await prepare(session)
                run = await start.start_in_session(self._engine, session, site, trigger, target)
        except IntegrityError as exc:
            if "uq_runs_one_active_per_site" not in str(exc):
                raise
            async with self._sessions() as session:
                active = await repo.own_active_run(session, account_id, site_id)
            active_id = active.id if active else "unknown"
            raise ConflictError(
                f"site {site_id!r} already has an active run {active_id}; pause/cancel it or wait",
                active_run_id=active_id,
            ) from exc
        self._engine.outbox.committed()
        return await self.run(account_id, run.id)

    # ------------------------------------------------------------------ for automation rules (services.rules)
    async def estimate_within(
        self, session: AsyncSession, site_id: str, target: RunTarget | None, max_credits: Decimal | None
    ) -> Decimal:
        """What a (targeted) run of the site would be estimated at now, inside the caller's transaction."""
        _, _, est = await start.plan_and_estimate(self._engine, session, site_id, target, max_credits)
        return est.total

    async def start_within(
        self,
        session: AsyncSession,
        site_id: str,
        target: RunTarget | None,
        trigger: str,
        max_credits: Decimal | None,
    ) -> str:
        """Start a (targeted) run inside the caller's transaction, its credits capped at `max_credits`; returns
        the run id. A refusal rolls back only its savepoint: SiteBusyError when the site has an active run,
        NothingPendingError when the target has nothing left to do, InsufficientCreditsError when the account
        cannot reserve it. Call `committed()` after the commit."""
        site = await sites.site_by_id(session, site_id)
        if site is None:
            raise NotFoundError(f"site {site_id!r} does not exist")
        try:
            async with session.begin_nested():
                run = await start.start_in_session(self._engine, session, site, trigger, target, max_credits)
        except IntegrityError as exc:
            if "uq_runs_one_active_per_site" not in str(exc):
                raise
            raise SiteBusyError(f"site {site_id!r} already has an active run") from exc
        return run.id

    def committed(self) -> None:
        """Wake the outbox relay after a transaction that started a run committed."""
        self._engine.outbox.committed()

    async def estimate(self, account_id: str, site_id: str) -> EstimateView:
        async with self._sessions.begin() as session:
            site = await sites.site_of(session, account_id, site_id)
            _, _, est = await start.plan_and_estimate(self._engine, session, site.id)
            balance, free = await available_for(session, site.account_id)
        return EstimateView(**est.model_dump(), balance=balance, available=free, sufficient=free >= est.required)

    async def ingest(self, batch: KeywordBatchIngested) -> bool:
        """An upstream keyword batch, at most once per message; with `start_run`, a run (trigger "event")
        starts in the same transaction, so a crash never leaves the keywords in and the run not started.

        Raises ProblemError (the handler dead-letters the record with its detail) for a batch that can
        never be imported: an unknown site, a site of another account, text the database cannot store.
        """
        for n, item in enumerate(batch.keywords):
            if problem := describe_bad_char(item.keyword):
                raise ProblemError(f"keywords.{n}.keyword {problem}")
        prepared = await asyncio.to_thread(sites.prepare_keywords, list(batch.keywords))
        async with self._sessions.begin() as session:
            site = await sites.site_by_id(session, batch.site_id)
            if site is None:
                raise NotFoundError(f"site {batch.site_id!r} does not exist")
            if site.account_id != batch.account_id:
                raise NotFoundError(f"site {batch.site_id!r} is not a site of account {batch.account_id!r}")
            if not await claim_inbox(session, INGEST_CONSUMER, batch.message_id):
                return False
            await sites.import_in_session(session, site, prepared, f"kafka:{batch.source}"[:100], self._engine.outbox)
            if batch.start_run:
                await self._start_for_event(session, site)
        self._engine.outbox.committed()
        return True

    async def _start_for_event(self, session: AsyncSession, site: Site) -> None:
        """A refused start is logged with its reason; the import stands."""
        try:
            async with session.begin_nested():
                await start.start_in_session(self._engine, session, site, "event")
        except ProblemError as exc:
            sites.log_line(session, site.id, None, None, f"event run not started: {exc.detail}", "warning")
        except IntegrityError:
            active = await repo.active_run(session, site.id)
            reason = f"run {active.id} is {active.status}" if active else "another run started"
            sites.log_line(session, site.id, None, None, f"event run not started: {reason}", "warning")

    # ------------------------------------------------------------------ control
    async def _transition(self, account_id: str, run_id: str, target: RunStatus) -> RunView:
        async with self._sessions.begin() as session:
            await control.transition(self._engine, session, account_id, run_id, target)
        self._engine.outbox.committed()
        return await self.run(account_id, run_id)

    async def pause(self, account_id: str, run_id: str) -> RunView:
        return await self._transition(account_id, run_id, RunStatus.PAUSED)

    async def resume(self, account_id: str, run_id: str) -> RunView:
        return await self._transition(account_id, run_id, RunStatus.RUNNING)

    async def cancel(self, account_id: str, run_id: str) -> RunView:
        return await self._transition(account_id, run_id, RunStatus.CANCELLED)

    # ------------------------------------------------------------------ the engine's own inputs
    async def command_runs(self, command_ids: list[str]) -> dict[str, str]:
        """command id → run id, for the commands this orchestrator issued (unknown ids left out)."""
        async with autocommit(self._sessions) as session:  # one read: no BEGIN and ROLLBACK around it
            return await repo.batch_runs(session, command_ids)

    async def apply_results(
        self, run_id: str, stage_results: list[StageResult], settled: Settled | None = None
    ) -> list[bool]:
        """Record results of one run in one transaction (per result False for a duplicate); `settled` runs
        in that transaction too (the consumer clears its attempt counts there)."""
        async with self._sessions.begin() as session:
            recorded = await results.record_results(self._engine, session, run_id, stage_results)
            if settled is not None:
                await settled(session)
        self._engine.outbox.committed()
        return recorded

    async def tick(self, page: int = 500) -> None:
        """Ask again for silent batches, expire overdue ones and nudge running runs (delays elapse here); safe
        from any replica.

        Every running run is visited, page by page; a failure on one run is logged and does not keep the
        others from their turn.
        """
        deadline = utcnow() - timedelta(seconds=self._engine.settings.stage_deadline_seconds)
        after = ""
        while True:
            async with self._sessions() as session:
                run_ids = await repo.running_run_ids(session, after, page)
            for run_id in run_ids:
                try:
                    async with self._sessions.begin() as session:
                        await timers.tick_run(self._engine, session, run_id, deadline)
                    self._engine.outbox.committed()
                except Exception:
                    log.exception("tick of run %s failed; the next tick tries again", run_id)
            if len(run_ids) < page:
                break
            after = run_ids[-1]
        await self._ask_expired()

    async def _ask_expired(self) -> None:
        """Ask again for the results of batches their deadline failed (timers.ask_expired). It scans recent
        runs, so it runs at most every LATE_SWEEP_SECONDS (or silence), not on every tick."""
        every = min(self._engine.settings.silence_timeout_seconds, LATE_SWEEP_SECONDS)
        now = asyncio.get_running_loop().time()
        if now < self._next_late_sweep:
            return
        self._next_late_sweep = now + every
        try:
            async with self._sessions.begin() as session:
                sent = await timers.ask_expired(self._engine, session)
            if sent:
                self._engine.outbox.committed()
        except Exception:
            log.exception("asking for the results of expired batches failed; the next sweep tries again")

    async def schedule_due(self, now: datetime | None = None) -> list[str]:
        """Start runs for due schedules (each in its own transaction); returns the started run ids."""
        now = now or utcnow()
        started: list[str] = []
        while True:
            async with self._sessions.begin() as session:
                found, run_id = await schedules.start_next_due(self._engine, session, now)
            if not found:
                return started
            if run_id is not None:
                started.append(run_id)
            self._engine.outbox.committed()

    # ------------------------------------------------------------------ a caller's reads
    async def _in_flight(self, session: AsyncSession, run: Run) -> list[tuple[StageBatch, BatchWait]]:
        released = await repo.released_batches(session, run.id)
        if not released:
            return []
        longest = await repo.longest_answered_waits(session, run.id)
        now = utcnow()
        return [(b, liveness.batch_wait(self._engine.settings, b, longest.get(b.stage), now)) for b in released]

    async def _view(self, session: AsyncSession, run: Run) -> RunView:
        tokens: dict[int, TokenUse] = {}
        for stage, ok, calls, prompt, completion in await repo.token_rows(session, run.id):
            use = (
                TokenUse(calls=calls, prompt_tokens=prompt, completion_tokens=completion)
                if ok
                else TokenUse(calls=calls, prompt_tokens=prompt, completion_tokens=completion, failed_calls=calls,
                              failed_prompt_tokens=prompt, failed_completion_tokens=completion)
            )  # fmt: skip
            tokens[stage] = tokens.get(stage, TokenUse()).add(use)
        waits = [w for _, w in await self._in_flight(session, run)]
        results = await repo.stage_results(session, run.id)
        return run_view(run, results, waits, liveness.run_liveness(waits, run.status), tokens)

    async def run(self, account_id: str, run_id: str) -> RunView:
        async with self._sessions() as session:
            run = await repo.get_run(session, account_id, run_id)
            if run is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            return await self._view(session, run)

    async def current(self, account_id: str, site_id: str) -> RunView | None:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            run = await repo.own_active_run(session, account_id, site_id)
            return await self._view(session, run) if run else None

    async def history(self, account_id: str, site_id: str, page: int, size: int) -> RunHistory:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            total = await repo.count_runs(session, account_id, site_id)
            runs = await repo.runs_page(session, account_id, site_id, page, size)
            return RunHistory(total=total, page=page, size=size, runs=[await self._view(session, r) for r in runs])

    async def activity(self, account_id: str, run_id: str, stage: int | None, limit: int) -> list[ActivityView]:
        async with self._sessions() as session:
            if await repo.get_run(session, account_id, run_id) is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            return [ActivityView.of(r) for r in await repo.activity(session, account_id, run_id, stage, limit)]

    async def processing(self, account_id: str, site_id: str) -> Processing:
        """The batches of the site's active run that workers hold right now, with their items' titles."""
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            run = await repo.own_active_run(session, account_id, site_id)
            if run is None:
                return Processing(site_id=site_id, run_id=None, batches=[])
            in_flight = await self._in_flight(session, run)
            out = []
            for b, w in in_flight:
                titles = await repo.item_titles(session, b.stage, site_id, list(b.item_ids))
                items = [BatchItem(id=i, title=titles.get(i, "?")) for i in b.item_ids]
                out.append(BatchInFlight(**w.model_dump(), items=items))
            return Processing(
                site_id=site_id,
                run_id=run.id,
                status=run.status,
                stage=run.current_stage,
                liveness=liveness.run_liveness([w for _, w in in_flight], run.status),
                batches=out,
            )

    # ------------------------------------------------------------------ automation figures
    async def site_figures(self, account_id: str, site_id: str, days: int) -> figures.AutomationFigures:
        """The site's figures; its calendar periods in the site's time zone."""
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            zone = ZoneInfo((await sites.site_config(session, site_id)).timezone)
            scope = figures.Scope(account_id=account_id, site_id=site_id)
            return await figures.figures(session, scope, zone, days, utcnow(), self._rule_credits)

    async def account_figures(self, caller_account: str, account_id: str, days: int) -> figures.AutomationFigures:
        """Every site's figures together; calendar periods in UTC. Another account's id is not found."""
        if account_id != caller_account:
            raise NotFoundError(f"account {account_id!r} does not exist")
        async with self._sessions() as session:
            scope = figures.Scope(account_id=account_id)
            return await figures.figures(session, scope, ZoneInfo("UTC"), days, utcnow(), self._rule_credits)
