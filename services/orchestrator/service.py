"""Run orchestration: the only place that decides what happens next.

State lives in PostgreSQL, so every decision survives a restart. Each decision runs in one
transaction that locks the run row (`SELECT ... FOR UPDATE`), which serialises result handlers, API
calls, the ticker and the scheduler of any number of orchestrator replicas for one run. Commands and
run events go out through the outbox in that same transaction. Lock order: run, then account.

Strict stage order: a stage is planned (pending items → batches) only when the previous one has a
result for every batch. Inside a stage, batches are released through a bounded window
(`inflight_batches_per_run`): pause stops releasing, resume releases again, cancel drops what is not
released; workers only finish what they hold. Before each release the batch's estimated cost must fit
the run's cap, the stage's budget share and the run's credit reservation (extended from the
account's free credits when needed); otherwise the stage or the run stops with `stopped_reason=budget`.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator import credits, pipeline, views
from services.orchestrator import repository as repo
from services.orchestrator.config import RunPlan, SiteConfig, SiteConfigPatch
from services.orchestrator.costs import DEFAULT_COSTS, CostTable
from services.orchestrator.estimate import Estimate, batch_estimate, estimate
from services.orchestrator.importing import dedupe
from services.orchestrator.schedule import next_run_at
from shared.contracts import (
    KeywordIn,
    RunEvent,
    RunStatus,
    Stage,
    StageCommand,
    StageResult,
    new_message_id,
    utcnow,
)
from shared.db.models import Account, CreditLedger, Run, Site, SiteConfigRow, StageBatch, StageRunResult
from shared.delivery import Outbox, claim_inbox
from shared.settings import Settings
from shared.topics import RUN_EVENTS, STAGE_COMMAND_TOPICS

log = logging.getLogger(__name__)

RESULTS_CONSUMER = "orchestrator.results"
INGEST_CONSUMER = "orchestrator.ingest"
DEFAULT_ACCOUNT = "default"
MAX_RECORDED_FAILURES = 200


class ProblemError(Exception):
    """A request that cannot be honoured; `status` maps to the HTTP status, `detail` says what and why."""

    status = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(ProblemError):
    status = 404


class ConflictError(ProblemError):
    status = 409


class InsufficientCreditsError(ProblemError):
    status = 402


@dataclass
class ImportSummary:
    received: int
    imported: int
    duplicates: int


def new_run_id(trigger: str) -> str:
    # Readable and sortable; the suffix keeps two sites started in the same second apart.
    return f"run_{utcnow():%Y%m%d_%H%M%S}_{trigger}_{secrets.token_hex(3)}"


class RunService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        settings: Settings,
        costs: CostTable = DEFAULT_COSTS,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._settings = settings
        self._costs = costs

    # ------------------------------------------------------------------ accounts, sites, keywords
    async def bootstrap(self) -> None:
        await self.create_account(
            DEFAULT_ACCOUNT,
            "Default account",
            "starter",
            Decimal(self._settings.default_account_credits),
            Decimal(0),
            exist_ok=True,
        )

    async def create_account(
        self,
        account_id: str | None,
        name: str,
        plan: str,
        initial_credits: Decimal,
        monthly_credits: Decimal,
        exist_ok: bool = False,
    ) -> Account:
        account_id = account_id or uuid.uuid4().hex[:16]
        async with self._sessions.begin() as session:
            existing = await credits.lock_account(session, account_id)
            if existing is not None:
                if exist_ok:
                    return existing
                raise ConflictError(f"account {account_id!r} already exists")
            account = Account(
                id=account_id, name=name, plan=plan, credit_balance=Decimal(0), monthly_credits=monthly_credits
            )
            session.add(account)
            await session.flush()
            if initial_credits > 0:  # through the ledger, so ledger sum == balance from the first cent
                await credits.grant(
                    session, account, f"grant:initial:{account_id}", initial_credits, {"reason": "initial credits"}
                )
        return account

    async def account_balance(self, account_id: str) -> dict[str, Any]:
        async with self._sessions() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise NotFoundError(f"account {account_id!r} does not exist")
            held = await credits.held_by_active_runs(session, account_id)
            return {
                "account_id": account.id,
                "plan": account.plan,
                "balance": account.credit_balance,
                "reserved": held,
                "available": account.credit_balance - held,
                "monthly_credits": account.monthly_credits,
            }

    async def ledger(self, account_id: str, page: int, size: int) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            if await session.get(Account, account_id) is None:
                raise NotFoundError(f"account {account_id!r} does not exist")
            rows = (
                await session.scalars(
                    select(CreditLedger)
                    .where(CreditLedger.account_id == account_id)
                    .order_by(CreditLedger.id.desc())
                    .offset((page - 1) * size)
                    .limit(size)
                )
            ).all()
            return [
                {
                    "id": r.id,
                    "at": r.created_at,
                    "kind": r.kind,
                    "amount": r.amount,
                    "balance_after": r.balance_after,
                    "run_id": r.run_id,
                    "key": r.idempotency_key,
                    "detail": r.detail,
                }
                for r in rows
            ]

    async def replenish_all(self, now: datetime | None = None) -> int:
        """Monthly grants for every account with a plan allowance; exactly once per account and period."""
        now = now or utcnow()
        async with self._sessions() as session:
            # Only accounts still missing this period's grant: the ticker asks every few seconds.
            ids = list(
                (
                    await session.scalars(
                        select(Account.id).where(
                            Account.monthly_credits > 0,
                            ~exists().where(
                                CreditLedger.idempotency_key == credits.monthly_key(Account.id, credits.period_of(now))
                            ),
                        )
                    )
                ).all()
            )
        granted = 0
        for account_id in ids:
            async with self._sessions.begin() as session:
                granted += await credits.replenish(session, account_id, now)
        return granted

    async def replenish(self, account_id: str, now: datetime | None = None) -> bool:
        async with self._sessions.begin() as session:
            if await session.get(Account, account_id) is None:
                raise NotFoundError(f"account {account_id!r} does not exist")
            return await credits.replenish(session, account_id, now or utcnow())

    async def create_site(self, name: str, domain: str | None, account_id: str | None) -> Site:
        async with self._sessions.begin() as session:
            account = account_id or DEFAULT_ACCOUNT
            if await session.get(Account, account) is None:
                raise NotFoundError(f"account {account!r} does not exist")
            site = Site(id=uuid.uuid4().hex[:16], account_id=account, name=name, domain=domain)
            session.add(site)
        return site

    async def get_site(self, site_id: str) -> Site:
        async with self._sessions() as session:
            site = await repo.get_site(session, site_id)
        if site is None:
            raise NotFoundError(f"site {site_id!r} does not exist")
        return site

    async def import_keywords(
        self,
        site_id: str,
        items: list[KeywordIn],
        source: str,
        message_id: str | None = None,
        start_run: bool = False,
    ) -> ImportSummary | None:
        """Import deduplicated keywords; with `message_id` (an ingest event) at most once per message.

        `start_run` starts a run (trigger "event") in the same transaction, so a crash can never leave
        the keywords imported and the requested run not started; a refused start is logged with its reason.
        """
        unique, _ = dedupe(items)
        async with self._sessions.begin() as session:
            site = await repo.get_site(session, site_id)
            if site is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            if message_id is not None and not await claim_inbox(session, INGEST_CONSUMER, message_id):
                return None
            imported = await repo.insert_keywords(session, site_id, unique, source)
            repo.log_line(
                session,
                site_id,
                None,
                None,
                f"imported {imported} keywords from {source} ({len(items) - imported} duplicates)",
            )
            if start_run:
                try:
                    async with session.begin_nested():
                        await self._start_in_session(session, site, "event")
                except ProblemError as exc:
                    repo.log_line(session, site_id, None, None, f"event run not started: {exc.detail}", "warning")
                except IntegrityError:
                    active = await repo.active_run(session, site_id)
                    reason = f"run {active.id} is {active.status}" if active else "another run started"
                    repo.log_line(session, site_id, None, None, f"event run not started: {reason}", "warning")
        self._outbox.committed()
        return ImportSummary(received=len(items), imported=imported, duplicates=len(items) - imported)

    # ------------------------------------------------------------------ configuration
    async def get_config(self, site_id: str) -> tuple[SiteConfig, SiteConfigRow]:
        async with self._sessions.begin() as session:
            if await repo.get_site(session, site_id) is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            row = await repo.config_row(session, site_id)
            return SiteConfig.model_validate(row.config), row

    async def update_config(self, site_id: str, patch: SiteConfigPatch) -> tuple[SiteConfig, SiteConfigRow]:
        async with self._sessions.begin() as session:
            if await repo.get_site(session, site_id) is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            row = await repo.config_row(session, site_id, lock=True)
            config = patch.apply(SiteConfig.model_validate(row.config))
            row.config = config.model_dump(mode="json")
            row.is_enabled = config.is_enabled
            row.next_run_at = next_run_at(config, utcnow()) if config.is_enabled else None
            row.updated_at = utcnow()
            repo.log_line(
                session, site_id, None, None, f"config updated: {sorted(patch.model_dump(exclude_unset=True))}"
            )
            return config, row

    async def estimate(self, site_id: str) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            site = await repo.get_site(session, site_id)
            if site is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            plan = RunPlan.from_config(SiteConfig.model_validate((await repo.config_row(session, site_id)).config))
            est = estimate(await pipeline.pending_counts(session, site_id), plan, self._costs)
            account = await session.get(Account, site.account_id)
            assert account is not None
            free = await credits.available(session, account)
        return est.model_dump() | {
            "balance": account.credit_balance,
            "available": free,
            "sufficient": free >= est.required,
        }

    async def pipeline_overview(self, site_id: str) -> dict[int, int]:
        await self.get_site(site_id)
        async with self._sessions() as session:
            return await pipeline.pending_counts(session, site_id)

    async def review_queue(self, site_id: str, limit: int = 100) -> list[dict[str, Any]]:
        await self.get_site(site_id)
        async with self._sessions() as session:
            ids = await pipeline.pending_ids(session, Stage.REVIEW, site_id, limit)
            return await repo.review_queue(session, ids)

    # ------------------------------------------------------------------ run lifecycle
    async def start_run(self, site_id: str, trigger: str = "manual") -> Run:
        try:
            async with self._sessions.begin() as session:
                site = await repo.get_site(session, site_id)
                if site is None:
                    raise NotFoundError(f"site {site_id!r} does not exist")
                run = await self._start_in_session(session, site, trigger)
        except IntegrityError as exc:
            if "uq_runs_one_active_per_site" not in str(exc):
                raise
            async with self._sessions() as session:
                active = await repo.active_run(session, site_id)
            active_id = active.id if active else "unknown"
            raise ConflictError(
                f"site {site_id!r} already has an active run {active_id}; pause/cancel it or wait",
                active_run_id=active_id,
            ) from exc
        self._outbox.committed()
        return run

    async def _start_in_session(self, session: AsyncSession, site: Site, trigger: str) -> Run:
        """Create and advance a run inside the caller's transaction (API, scheduler or ingest event).

        The run row goes in first and the account is locked after: every other path locks run then
        account, and the one-active-run index may make this insert wait on a transaction that holds a run
        of this site, so taking the account lock first could deadlock with it.
        """
        config = SiteConfig.model_validate((await repo.config_row(session, site.id)).config)
        plan = RunPlan.from_config(config)
        counts = await pipeline.pending_counts(session, site.id)
        est: Estimate = estimate(counts, plan, self._costs)
        run = Run(
            id=new_run_id(trigger),
            site_id=site.id,
            account_id=site.account_id,
            trigger=trigger,
            status=RunStatus.RUNNING.value,
            current_stage=0,
            options=plan.model_dump(mode="json"),
            initial_snapshot={
                "pending": {str(k): v for k, v in counts.items() if k <= 6},
                "total": sum(v for k, v in counts.items() if k <= 6),
                "estimate": est.model_dump(mode="json"),
            },
            total_credits_used=Decimal(0),
            estimated_credits=est.total,
            reserved_credits=est.required,
            started_at=utcnow(),
        )
        session.add(run)
        await session.flush()  # the one-active-run index speaks here, not at commit
        account = await credits.lock_account(session, site.account_id)
        assert account is not None
        free = await credits.available(session, account) + run.reserved_credits  # not counting this run's hold
        if free < est.required:  # raising rolls the run back with the transaction (or savepoint)
            raise InsufficientCreditsError(
                f"not enough credits: this run is estimated at {est.total}, starting needs {est.required} "
                f"(1.2 × estimate) and the account has {free} available",
                estimate=str(est.total),
                required=str(est.required),
                balance=str(account.credit_balance),
                available=str(free),
                shortfall=str(est.required - free),
            )
        self._event(
            session,
            run,
            0,
            "started",
            f"run started ({trigger}); pending {counts}; estimate {est.total} credits, reserved {est.required}",
        )
        await self._advance(session, run)
        return run

    async def pause(self, run_id: str) -> Run:
        return await self._transition(run_id, RunStatus.PAUSED)

    async def resume(self, run_id: str) -> Run:
        return await self._transition(run_id, RunStatus.RUNNING)

    async def cancel(self, run_id: str) -> Run:
        return await self._transition(run_id, RunStatus.CANCELLED)

    async def _transition(self, run_id: str, target: RunStatus) -> Run:
        allowed = {
            RunStatus.PAUSED: {RunStatus.RUNNING},
            RunStatus.RUNNING: {RunStatus.PAUSED},
            RunStatus.CANCELLED: {RunStatus.RUNNING, RunStatus.PAUSED},
        }[target]
        verb = {RunStatus.PAUSED: "pause", RunStatus.RUNNING: "resume", RunStatus.CANCELLED: "cancel"}[target]
        async with self._sessions.begin() as session:
            run = await repo.lock_run(session, run_id)
            if run is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            if RunStatus(run.status) not in allowed:
                raise ConflictError(f"cannot {verb} run {run_id}: it is {run.status}", status=run.status)
            now = utcnow()
            run.status = target.value
            sr = await repo.stage_result(session, run.id, run.current_stage) if run.current_stage else None
            if target is RunStatus.PAUSED:
                run.paused_at = now
                if sr is not None and sr.status == "running" and sr.stopped_reason is None:
                    sr.stopped_reason = "paused"  # a limit or budget reason already there stays
                self._event(
                    session,
                    run,
                    run.current_stage,
                    "paused",
                    f"paused at stage {run.current_stage}"
                    + (f", batch {sr.batches_done}/{sr.batches_total}" if sr else ""),
                )
            elif target is RunStatus.RUNNING:
                run.resumed_at = now
                if sr is not None and sr.stopped_reason == "paused":
                    sr.stopped_reason = None
                self._event(session, run, run.current_stage, "resumed", f"resumed at stage {run.current_stage}")
                await self._advance(session, run)
            else:
                run.cancelled_at = now
                run.stopped_reason = "cancelled"
                dropped = await repo.close_pending_batches(session, run.id, "cancelled")
                if sr is not None and sr.status == "running":
                    sr.status, sr.partial, sr.stopped_reason, sr.finished_at = "stopped", True, "cancelled", now
                    sr.seconds = round((now - sr.started_at).total_seconds(), 3)
                self._event(
                    session,
                    run,
                    run.current_stage,
                    "cancelled",
                    f"cancelled; {dropped} unreleased batches dropped; site free; reservation released",
                )
        self._outbox.committed()
        return run

    # ------------------------------------------------------------------ results
    async def on_result(self, result: StageResult) -> bool:
        """Record a worker's result and decide what is next. False for a duplicate; NotFoundError for a
        result whose command this orchestrator never issued."""
        async with self._sessions.begin() as session:
            if not await claim_inbox(session, RESULTS_CONSUMER, result.message_id):
                return False
            batch_run = await session.scalar(select(StageBatch.run_id).where(StageBatch.id == result.command_id))
            if batch_run is None:  # rolls the inbox claim back; the handler dead-letters the record
                raise NotFoundError(f"result {result.message_id} names unknown command {result.command_id}")
            run = await repo.lock_run(session, batch_run)
            batch = await session.get(StageBatch, result.command_id, with_for_update=True, populate_existing=True)
            assert run is not None and batch is not None  # foreign key: a batch always has its run
            cost = self._costs.credits(result.usage)
            charged = Decimal(0)
            if cost > 0:
                done = await credits.debit(
                    session,
                    run.account_id,
                    run.id,
                    f"debit:{result.command_id}",
                    cost,
                    {"stage": int(result.stage), "batch": batch.seq, "usage": result.usage.model_dump(mode="json")},
                )
                charged = done or Decimal(0)
                run.total_credits_used += charged
            sr = await repo.stage_result(session, run.id, batch.stage)
            if batch.status != "released":
                # Already settled (a replay under a new message id, or late after its deadline): the
                # ledger key kept the charge single; the counts were recorded the first time.
                if sr is not None:
                    sr.credits += charged
                self._event(
                    session,
                    run,
                    batch.stage,
                    "late-result",
                    f"result for batch {batch.seq} arrived while it was {batch.status}",
                    level="warning",
                )
                return True
            batch.status, batch.finished_at = "done", utcnow()
            batch.result = {
                "status": result.status.value,
                "processed": result.items_processed,
                "created": result.items_created,
                "skipped": result.items_skipped,
                "failed": len(result.failures),
                "credits": str(charged),
                "worker": result.worker,
            }
            if sr is not None:
                sr.items_processed += result.items_processed
                sr.items_created += result.items_created
                sr.items_skipped += result.items_skipped
                sr.items_failed += len(result.failures)
                sr.batches_done += 1
                sr.credits += charged
                if result.failures:
                    sr.partial = True
                    room = max(MAX_RECORDED_FAILURES - len(sr.failures), 0)
                    sr.failures = [
                        *sr.failures,
                        *({"item_id": f.item_id, "reason": f.reason} for f in result.failures[:room]),
                    ]
            if result.failures:
                self._event(
                    session,
                    run,
                    batch.stage,
                    "item-failures",
                    f"batch {batch.seq}: {len(result.failures)} item(s) failed: {result.failures[0].reason[:200]}",
                    level="warning",
                )
            await self._advance(session, run)
        self._outbox.committed()
        return True

    # ------------------------------------------------------------------ timers
    async def tick(self, page: int = 500) -> None:
        """Expire overdue batches and nudge running runs (delays elapse here); safe from any replica.

        Every running run is visited, page by page; a failure on one run is logged and does not keep the
        others from their turn.
        """
        deadline = utcnow() - timedelta(seconds=self._settings.stage_deadline_seconds)
        after = ""
        while True:
            async with self._sessions() as session:
                run_ids = list(
                    (
                        await session.scalars(
                            select(Run.id)
                            .where(Run.status == RunStatus.RUNNING.value, Run.id > after)
                            .order_by(Run.id)
                            .limit(page)
                        )
                    ).all()
                )
            for run_id in run_ids:
                try:
                    await self._tick_run(run_id, deadline)
                except Exception:
                    log.exception("tick of run %s failed; the next tick tries again", run_id)
            if len(run_ids) < page:
                return
            after = run_ids[-1]

    async def _tick_run(self, run_id: str, deadline: datetime) -> None:
        async with self._sessions.begin() as session:
            run = await session.scalar(
                select(Run)
                .where(Run.id == run_id)
                .with_for_update(skip_locked=True, key_share=True)
                .execution_options(populate_existing=True)
            )
            if run is None or run.status != RunStatus.RUNNING.value:
                return
            overdue = (
                await session.scalars(
                    select(StageBatch)
                    .where(
                        StageBatch.run_id == run_id,
                        StageBatch.status == "released",
                        StageBatch.released_at < deadline,
                    )
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).all()
            for batch in overdue:
                await self._expire(session, run, batch)
            await self._advance(session, run)
        self._outbox.committed()

    async def schedule_due(self, now: datetime | None = None) -> list[str]:
        """Start runs for due schedules; a site with an active run is skipped with the reason recorded.

        Due rows are claimed with SKIP LOCKED and moved to their next time in the same transaction that
        starts the run, so two orchestrator replicas never trigger one schedule twice.
        """
        now = now or utcnow()
        started: list[str] = []
        while True:
            async with self._sessions.begin() as session:
                row = await session.scalar(
                    select(SiteConfigRow)
                    .where(SiteConfigRow.is_enabled, SiteConfigRow.next_run_at <= now)
                    .order_by(SiteConfigRow.next_run_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
                if row is None:
                    return started
                try:
                    config = SiteConfig.model_validate(row.config)
                except ValidationError as exc:  # a stored config that no longer validates must not block others
                    row.is_enabled, row.next_run_at = False, None
                    row.last_schedule_note = f"schedule disabled at {now.isoformat()}: invalid config: {exc}"[:2000]
                    repo.log_line(session, row.site_id, None, None, row.last_schedule_note, "error")
                    continue
                row.next_run_at = next_run_at(config, now)
                site = await repo.get_site(session, row.site_id)
                assert site is not None
                active = await repo.active_run(session, site.id)
                if active is not None:
                    row.last_schedule_note = f"skipped at {now.isoformat()}: run {active.id} is {active.status}"
                    repo.log_line(session, site.id, None, None, f"scheduled run {row.last_schedule_note}", "warning")
                    continue
                try:
                    async with session.begin_nested():
                        run = await self._start_in_session(session, site, "scheduled")
                except Exception as exc:  # the schedule has moved on either way; the reason is recorded
                    reason = (
                        exc.detail
                        if isinstance(exc, ProblemError)
                        else "another run started at the same moment"
                        if isinstance(exc, IntegrityError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    row.last_schedule_note = f"skipped at {now.isoformat()}: {reason}"
                    repo.log_line(session, site.id, None, None, f"scheduled run {row.last_schedule_note}", "warning")
                    continue
                row.last_run_at, row.last_schedule_note = now, f"started {run.id}"
                started.append(run.id)
            self._outbox.committed()

    async def _expire(self, session: AsyncSession, run: Run, batch: StageBatch) -> None:
        reason = f"no result within the stage deadline ({self._settings.stage_deadline_seconds:.0f}s)"
        batch.status, batch.finished_at, batch.result = "failed", utcnow(), {"reason": reason}
        sr = await repo.stage_result(session, run.id, batch.stage)
        if sr is not None:
            sr.items_failed += len(batch.item_ids)
            sr.batches_done += 1
            sr.partial = True
            sr.failures = [*sr.failures, *({"item_id": i, "reason": reason} for i in batch.item_ids)][
                :MAX_RECORDED_FAILURES
            ]
        self._event(session, run, batch.stage, "batch-expired", f"batch {batch.seq}: {reason}", level="warning")

    # ------------------------------------------------------------------ the barrier
    async def _advance(self, session: AsyncSession, run: Run) -> None:
        """Release batches of the current stage, or close it and open the next. The run row is locked."""
        plan = RunPlan.model_validate(run.options)
        while run.status == RunStatus.RUNNING.value:
            if run.current_stage == 0:
                await self._enter_stage(session, run, Stage.CLUSTER, plan)
                continue
            stage = Stage(run.current_stage)
            counts = await repo.batch_status_counts(session, run.id, stage)
            if counts.get("pending", 0) and run.stopped_reason is None:
                await self._release_window(session, run, stage, plan)
                counts = await repo.batch_status_counts(session, run.id, stage)
            if counts.get("released", 0):
                return  # results still to come
            if counts.get("pending", 0) and run.stopped_reason is None:
                return  # waiting for a delay between batches to elapse (the ticker comes back)
            if run.stopped_reason == "budget":
                await self._stop_for_budget(session, run, stage)
                return
            if not await self._finish_stage(session, run, stage):
                return
            if stage is Stage.IMAGES:
                await self._review_gate(session, run, plan)
                return
            sr = await repo.stage_result(session, run.id, stage)
            wait = timedelta(seconds=plan.delay_between_stages_seconds)
            if (
                wait
                and sr is not None
                and sr.finished_at
                and sr.status != "skipped"
                and utcnow() < sr.finished_at + wait
            ):
                return  # delay between stages; the ticker advances later
            await self._enter_stage(session, run, Stage(stage + 1), plan)

    async def _release_window(self, session: AsyncSession, run: Run, stage: Stage, plan: RunPlan) -> None:
        in_flight, in_flight_cost = await repo.inflight(session, run.id)
        free = self._settings.inflight_batches_per_run - in_flight
        delay = plan.delay_between_batches_seconds
        if delay:
            last = await repo.last_release(session, run.id, stage)
            if last is not None and utcnow() < last + timedelta(seconds=delay):
                return
            free = min(free, 1)  # with a delay, one batch at a time
        if free <= 0:
            return
        sr = await repo.stage_result(session, run.id, stage)
        stage_share = plan.stage_share(stage)
        cap = plan.limits.max_credits_per_run
        for batch in await repo.pending_batches(session, run.id, stage, free):
            projected = run.total_credits_used + in_flight_cost + batch.estimate
            if cap and projected > cap:
                self._halt_for_budget(
                    session,
                    run,
                    stage,
                    f"run credit cap {cap} reached (used {run.total_credits_used}, in flight "
                    f"{in_flight_cost}, next batch ~{batch.estimate})",
                )
                return
            if stage_share is not None and sr is not None:
                _, stage_in_flight = await repo.inflight(session, run.id, stage)
                if sr.credits + stage_in_flight + batch.estimate > stage_share:
                    skipped = await repo.close_pending_batches(session, run.id, "skipped", stage)
                    sr.stopped_reason, sr.partial = "budget", True
                    self._event(
                        session,
                        run,
                        stage,
                        "budget",
                        f"stage {int(stage)} budget share {stage_share} spent ({sr.credits} used); "
                        f"{skipped} batches left for the next run",
                    )
                    return
            if not await self._reserve(session, run, projected):
                self._halt_for_budget(session, run, stage, "account balance cannot cover the next batch")
                return
            self._release(session, run, batch, plan)
            in_flight_cost += batch.estimate

    def _halt_for_budget(self, session: AsyncSession, run: Run, stage: Stage, why: str) -> None:
        """Release nothing more; once in-flight batches are back, `_advance` ends the run (`_stop_for_budget`)."""
        run.stopped_reason = "budget"
        self._event(session, run, stage, "budget", f"{why}; stopping at this batch boundary")

    async def _reserve(self, session: AsyncSession, run: Run, projected: Decimal) -> bool:
        """Make sure the run's reservation covers `projected` spend, growing it from free credits."""
        if projected <= run.reserved_credits:
            return True
        account = await credits.lock_account(session, run.account_id)
        assert account is not None
        need = projected - run.reserved_credits
        if await credits.available(session, account) < need:
            return False
        run.reserved_credits += need
        return True

    async def _stop_for_budget(self, session: AsyncSession, run: Run, stage: Stage) -> None:
        skipped = await repo.close_pending_batches(session, run.id, "skipped")
        sr = await repo.stage_result(session, run.id, stage)
        now = utcnow()
        if sr is not None and sr.status == "running":
            sr.status, sr.partial, sr.stopped_reason, sr.finished_at = "stopped", True, "budget", now
            sr.seconds = round((now - sr.started_at).total_seconds(), 3)
        run.status, run.completed_at = RunStatus.COMPLETED.value, now
        self._event(
            session,
            run,
            stage,
            "completed",
            f"run stopped for budget at stage {int(stage)}; {skipped} batches left for the next run; "
            f"{run.total_credits_used:.2f} credits used",
        )

    async def _enter_stage(self, session: AsyncSession, run: Run, stage: Stage, plan: RunPlan) -> None:
        run.current_stage = int(stage)
        now = utcnow()
        if not plan.stage_enabled[int(stage)]:
            session.add(
                StageRunResult(
                    run_id=run.id,
                    stage=int(stage),
                    status="skipped",
                    failures=[],
                    credits=Decimal(0),
                    stopped_reason="disabled",
                    started_at=now,
                    finished_at=now,
                )
            )
            await session.flush()
            self._event(session, run, stage, "stage-skipped", f"stage {int(stage)} ({stage.label}): disabled, skipped")
            return
        limit = plan.limits.for_stage(int(stage))
        ids = await pipeline.pending_ids(session, stage, run.site_id, limit + 1 if limit else None)
        limited = bool(limit) and len(ids) > limit
        ids = ids[:limit] if limit else ids
        size = plan.batch_sizes[int(stage)]
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        session.add_all(
            StageBatch(
                id=new_message_id(),
                run_id=run.id,
                stage=int(stage),
                seq=seq,
                item_ids=chunk,
                status="pending",
                estimate=batch_estimate(int(stage), len(chunk), plan, self._costs),
            )
            for seq, chunk in enumerate(chunks)
        )
        session.add(
            StageRunResult(
                run_id=run.id,
                stage=int(stage),
                status="running" if chunks else "skipped",
                items_in=len(ids),
                batches_total=len(chunks),
                failures=[],
                credits=Decimal(0),
                partial=limited,
                stopped_reason="limit" if limited else None,
                started_at=now,
                finished_at=None if chunks else now,
            )
        )
        await session.flush()
        if chunks:
            self._event(
                session,
                run,
                stage,
                "stage-started",
                f"stage {int(stage)} ({stage.label}): {len(ids)} items in {len(chunks)} batches"
                + (f"; limited to {limit} per run, the rest waits for the next run" if limited else ""),
            )
        else:
            self._event(session, run, stage, "stage-skipped", f"stage {int(stage)} ({stage.label}): nothing pending")

    async def _finish_stage(self, session: AsyncSession, run: Run, stage: Stage) -> bool:
        """Close the stage; False when the stage failed as a whole and with it the run."""
        sr = await repo.stage_result(session, run.id, stage)
        if sr is None or sr.status != "running":
            return True
        now = utcnow()
        sr.status, sr.finished_at = "completed", now
        sr.seconds = round((now - sr.started_at).total_seconds(), 3)
        sr.partial = sr.partial or sr.items_failed > 0
        # Item failures a worker reported leave the stage partial and the run goes on with what exists
        # (failed items stay pending for the next run). Only a stage where nothing was done because its
        # results never came (workers down: batches expired) fails the run, visibly.
        expired = (await repo.batch_status_counts(session, run.id, stage)).get("failed", 0)
        if expired and not sr.items_processed and not sr.items_skipped:
            first = sr.failures[0]["reason"] if sr.failures else "unknown"
            sr.status, sr.stopped_reason = "failed", "failed"
            run.status, run.completed_at, run.stopped_reason = RunStatus.FAILED.value, now, "failed"
            run.error_message = (
                f"stage {int(stage)} ({stage.label}): all {sr.items_failed} items failed; first: {first}"
            )
            self._event(session, run, stage, "failed", run.error_message, level="error")
            return False
        self._event(
            session,
            run,
            stage,
            "stage-completed",
            f"stage {int(stage)}: {sr.items_processed} processed, {sr.items_created} created, "
            f"{sr.items_failed} failed, {sr.credits:.2f} credits in {sr.seconds:.1f}s",
        )
        return True

    async def _review_gate(self, session: AsyncSession, run: Run, plan: RunPlan) -> None:
        run.current_stage = int(Stage.REVIEW)
        ready = len(await pipeline.pending_ids(session, Stage.REVIEW, run.site_id))
        limit = plan.limits.for_stage(int(Stage.REVIEW))
        admitted = min(ready, limit) if limit else ready
        now = utcnow()
        session.add(
            StageRunResult(
                run_id=run.id,
                stage=int(Stage.REVIEW),
                status="completed",
                items_in=ready,
                items_processed=admitted,
                failures=[],
                credits=Decimal(0),
                partial=admitted < ready,
                stopped_reason="limit" if admitted < ready else None,
                started_at=now,
                finished_at=now,
            )
        )
        run.status, run.completed_at = RunStatus.COMPLETED.value, now
        self._event(
            session,
            run,
            Stage.REVIEW,
            "completed",
            f"run completed: {admitted} drafts ready for review; {run.total_credits_used:.2f} credits used; "
            "reservation released",
        )

    def _release(self, session: AsyncSession, run: Run, batch: StageBatch, plan: RunPlan) -> None:
        command = StageCommand(
            message_id=batch.id,
            account_id=run.account_id,
            site_id=run.site_id,
            run_id=run.id,
            stage=Stage(batch.stage),
            batch_seq=batch.seq,
            attempt=batch.attempt,
            item_ids=list(batch.item_ids),
            options=plan.options,
        )
        self._outbox.add(session, STAGE_COMMAND_TOPICS[batch.stage], run.site_id, command)
        batch.status, batch.released_at = "released", utcnow()

    def _event(self, session: AsyncSession, run: Run, stage: int, event: str, detail: str, level: str = "info") -> None:
        repo.log_line(session, run.site_id, run.id, stage or None, detail, level)
        if self._settings.run_log_dir is not None:
            path = Path(self._settings.run_log_dir) / f"{run.id}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{utcnow().isoformat()} stage={stage} {level} {detail}\n")
        self._outbox.add(
            session,
            RUN_EVENTS,
            run.site_id,
            RunEvent(
                account_id=run.account_id,
                site_id=run.site_id,
                run_id=run.id,
                stage=int(stage),
                status=RunStatus(run.status),
                event=event,
                detail=detail[:1000],
            ),
        )


class RunQueries:
    """Read side of the API."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def run(self, run_id: str) -> views.RunView:
        async with self._sessions() as session:
            run = await session.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            return await views.run_view(session, run)

    async def current(self, site_id: str) -> views.RunView | None:
        async with self._sessions() as session:
            if await repo.get_site(session, site_id) is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            run = await repo.active_run(session, site_id)
            return await views.run_view(session, run) if run else None

    async def history(self, site_id: str, page: int, size: int) -> dict[str, Any]:
        async with self._sessions() as session:
            if await repo.get_site(session, site_id) is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            total = await session.scalar(select(func.count()).select_from(Run).where(Run.site_id == site_id))
            runs = (
                await session.scalars(
                    select(Run)
                    .where(Run.site_id == site_id)
                    .order_by(Run.started_at.desc(), Run.id.desc())
                    .offset((page - 1) * size)
                    .limit(size)
                )
            ).all()
            return {
                "total": int(total or 0),
                "page": page,
                "size": size,
                "runs": [await views.run_view(session, r) for r in runs],
            }

    async def activity(self, run_id: str, stage: int | None, limit: int) -> list[views.ActivityView]:
        async with self._sessions() as session:
            if await session.get(Run, run_id) is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            return await views.activity(session, run_id, stage, limit)

    async def processing(self, site_id: str) -> dict[str, Any]:
        """The batches of the site's active run that workers hold right now, with their items' titles."""
        async with self._sessions() as session:
            if await repo.get_site(session, site_id) is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            run = await repo.active_run(session, site_id)
            if run is None:
                return {"site_id": site_id, "run_id": None, "batches": []}
            batches = (
                await session.scalars(
                    select(StageBatch)
                    .where(StageBatch.run_id == run.id, StageBatch.status == "released")
                    .order_by(StageBatch.stage, StageBatch.seq)
                )
            ).all()
            out = []
            for b in batches:
                titles = await repo.item_titles(session, b.stage, list(b.item_ids))
                out.append(
                    {
                        "command_id": b.id,
                        "stage": b.stage,
                        "seq": b.seq,
                        "released_at": b.released_at,
                        "items": [{"id": i, "title": titles.get(i, "?")} for i in b.item_ids],
                    }
                )
            return {
                "site_id": site_id,
                "run_id": run.id,
                "status": run.status,
                "stage": run.current_stage,
                "batches": out,
            }
