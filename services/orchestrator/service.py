"""Run orchestration: the only place that decides what happens next.

State lives in PostgreSQL, so every decision survives a restart. Each decision runs in one
transaction that locks the run row (`SELECT ... FOR UPDATE`), which serialises result handlers, API
calls and the ticker of any number of orchestrator replicas for one run. Commands and run events go
out through the outbox in that same transaction.

Strict stage order: a stage is planned (pending items → batches) only when the previous one has a
result for every batch. Inside a stage, batches are released through a bounded window
(`inflight_batches_per_run`): pause stops releasing, resume releases again, cancel drops what is not
released; workers only finish what they hold.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator import pipeline, views
from services.orchestrator import repository as repo
from services.orchestrator.costs import DEFAULT_COSTS, CostTable
from services.orchestrator.importing import dedupe
from shared.contracts import (
    KeywordIn,
    RunEvent,
    RunStatus,
    Stage,
    StageCommand,
    StageOptions,
    StageResult,
    new_message_id,
    utcnow,
)
from shared.db.models import Account, Run, Site, StageBatch, StageRunResult
from shared.delivery import Outbox, claim_inbox
from shared.settings import Settings
from shared.topics import RUN_EVENTS, STAGE_COMMAND_TOPICS

log = logging.getLogger(__name__)

RESULTS_CONSUMER = "orchestrator.results"
INGEST_CONSUMER = "orchestrator.ingest"
DEFAULT_ACCOUNT = "default"
MAX_RECORDED_FAILURES = 200
DEFAULT_BATCH_SIZES = {1: 20, 2: 1, 3: 20, 4: 1, 5: 1, 6: 1}


class RunPlan(BaseModel):
    """How a run batches and what options workers get; frozen into the run at start."""

    model_config = ConfigDict(extra="forbid")

    batch_sizes: dict[int, int] = Field(default_factory=lambda: dict(DEFAULT_BATCH_SIZES))
    options: StageOptions = Field(default_factory=StageOptions)

    @field_validator("batch_sizes")
    @classmethod
    def _sizes(cls, value: dict[int, int]) -> dict[int, int]:
        for stage, size in value.items():
            if stage not in DEFAULT_BATCH_SIZES:
                raise ValueError(f"stage {stage} has no batches (stages 1-6 do)")
            if not 1 <= size <= 1000:
                raise ValueError(f"batch size for stage {stage} must be 1-1000, got {size}")
        return DEFAULT_BATCH_SIZES | value


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

    # ------------------------------------------------------------------ sites and keywords
    async def bootstrap(self) -> None:
        async with self._sessions.begin() as session:
            await repo.ensure_account(
                session, DEFAULT_ACCOUNT, "Default account", Decimal(self._settings.default_account_credits)
            )

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
        self, site_id: str, items: list[KeywordIn], source: str, message_id: str | None = None
    ) -> ImportSummary | None:
        """Import deduplicated keywords; with `message_id` (an ingest event) at most once per message."""
        unique, _ = dedupe(items)
        async with self._sessions.begin() as session:
            if await repo.get_site(session, site_id) is None:
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
        return ImportSummary(received=len(items), imported=imported, duplicates=len(items) - imported)

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
    async def start_run(self, site_id: str, trigger: str = "manual", plan: RunPlan | None = None) -> Run:
        plan = plan or RunPlan()
        try:
            async with self._sessions.begin() as session:
                site = await repo.get_site(session, site_id)
                if site is None:
                    raise NotFoundError(f"site {site_id!r} does not exist")
                counts = await pipeline.pending_counts(session, site_id)
                run = Run(
                    id=new_run_id(trigger),
                    site_id=site_id,
                    account_id=site.account_id,
                    trigger=trigger,
                    status=RunStatus.RUNNING.value,
                    current_stage=0,
                    options=plan.model_dump(mode="json"),
                    initial_snapshot={
                        "pending": {str(k): v for k, v in counts.items() if k <= 6},
                        "total": sum(v for k, v in counts.items() if k <= 6),
                    },
                    total_credits_used=Decimal(0),
                    started_at=utcnow(),
                )
                session.add(run)
                await session.flush()  # the partial unique index speaks here, not at commit
                self._event(session, run, 0, "started", f"run started ({trigger}); pending {counts}")
                await self._advance(session, run)
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
                if sr is not None and sr.status == "running":
                    sr.stopped_reason = "paused"
            elif target is RunStatus.RUNNING:
                run.resumed_at = now
                if sr is not None and sr.stopped_reason == "paused":
                    sr.stopped_reason = None
            else:
                run.cancelled_at = now
                run.stopped_reason = "cancelled"
                dropped = await repo.cancel_pending_batches(session, run.id)
                if sr is not None and sr.status == "running":
                    sr.status, sr.partial, sr.stopped_reason, sr.finished_at = "stopped", True, "cancelled", now
                self._event(session, run, run.current_stage, "cancelled", f"{dropped} unreleased batches dropped")
            if target is not RunStatus.CANCELLED:
                self._event(session, run, run.current_stage, target.value, f"run {target.value}")
            if target is RunStatus.RUNNING:
                await self._advance(session, run)
        self._outbox.committed()
        return run

    # ------------------------------------------------------------------ results
    async def on_result(self, result: StageResult) -> bool:
        """Record a worker's result and decide what is next. False for a duplicate or unknown result."""
        async with self._sessions.begin() as session:
            if not await claim_inbox(session, RESULTS_CONSUMER, result.message_id):
                return False
            batch_run = await session.scalar(select(StageBatch.run_id).where(StageBatch.id == result.command_id))
            if batch_run is None:
                log.warning("result %s names unknown command %s", result.message_id, result.command_id)
                return False
            run = await repo.lock_run(session, batch_run)
            batch = await session.get(StageBatch, result.command_id, with_for_update=True)
            assert run is not None and batch is not None  # foreign key: a batch always has its run
            cost = self._costs.credits(result.usage)
            charged = cost > 0 and await repo.debit(
                session,
                run.account_id,
                run.id,
                f"debit:{result.command_id}",
                cost,
                {"stage": int(result.stage), "batch": batch.seq, "usage": result.usage.model_dump(mode="json")},
            )
            if charged:
                run.total_credits_used += cost
            if batch.status != "released":
                # Already settled (a replay with a new message id, or late after its deadline): the
                # ledger key above kept the charge single; the counts were recorded the first time.
                self._event(
                    session,
                    run,
                    batch.stage,
                    "late-result",
                    f"result for batch {batch.seq} arrived while it was {batch.status}",
                    level="warning",
                )
                if charged:
                    sr = await repo.stage_result(session, run.id, batch.stage)
                    if sr is not None:
                        sr.credits += cost
                return True
            batch.status, batch.finished_at = "done", utcnow()
            batch.result = {
                "status": result.status.value,
                "processed": result.items_processed,
                "created": result.items_created,
                "skipped": result.items_skipped,
                "failed": len(result.failures),
                "credits": str(cost),
                "worker": result.worker,
            }
            sr = await repo.stage_result(session, run.id, batch.stage)
            if sr is not None:
                sr.items_processed += result.items_processed
                sr.items_created += result.items_created
                sr.items_skipped += result.items_skipped
                sr.items_failed += len(result.failures)
                sr.batches_done += 1
                sr.credits += cost if charged else Decimal(0)
                if result.failures:
                    sr.partial = True
                    room = MAX_RECORDED_FAILURES - len(sr.failures)
                    sr.failures = [
                        *sr.failures,
                        *({"item_id": f.item_id, "reason": f.reason} for f in result.failures[: max(room, 0)]),
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
    async def tick(self) -> None:
        """Expire overdue batches and nudge running runs; safe from any number of replicas."""
        deadline = utcnow() - timedelta(seconds=self._settings.stage_deadline_seconds)
        async with self._sessions() as session:
            run_ids = list(
                (await session.scalars(select(Run.id).where(Run.status == RunStatus.RUNNING.value).limit(500))).all()
            )
        for run_id in run_ids:
            async with self._sessions.begin() as session:
                run = await session.scalar(select(Run).where(Run.id == run_id).with_for_update(skip_locked=True))
                if run is None or run.status != RunStatus.RUNNING.value:
                    continue
                overdue = (
                    await session.scalars(
                        select(StageBatch)
                        .where(
                            StageBatch.run_id == run_id,
                            StageBatch.status == "released",
                            StageBatch.released_at < deadline,
                        )
                        .with_for_update()
                    )
                ).all()
                for batch in overdue:
                    await self._expire(session, run, batch)
                await self._advance(session, run)
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
            pending, released = counts.get("pending", 0), counts.get("released", 0)
            if pending or released:
                free = self._settings.inflight_batches_per_run - released
                if pending and free > 0:
                    for batch in await repo.pending_batches(session, run.id, stage, free):
                        self._release(session, run, batch, plan)
                return
            if not await self._finish_stage(session, run, stage):
                return
            if stage is Stage.IMAGES:
                await self._review_gate(session, run)
                return
            await self._enter_stage(session, run, Stage(stage + 1), plan)

    async def _enter_stage(self, session: AsyncSession, run: Run, stage: Stage, plan: RunPlan) -> None:
        run.current_stage = int(stage)
        ids = await pipeline.pending_ids(session, stage, run.site_id)
        size = plan.batch_sizes[int(stage)]
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        session.add_all(
            StageBatch(id=new_message_id(), run_id=run.id, stage=int(stage), seq=seq, item_ids=chunk, status="pending")
            for seq, chunk in enumerate(chunks)
        )
        now = utcnow()
        session.add(
            StageRunResult(
                run_id=run.id,
                stage=int(stage),
                status="running" if chunks else "skipped",
                items_in=len(ids),
                batches_total=len(chunks),
                failures=[],
                credits=Decimal(0),
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
                f"stage {int(stage)} ({stage.label}): {len(ids)} items in {len(chunks)} batches",
            )
        else:
            self._event(session, run, stage, "stage-skipped", f"stage {int(stage)} ({stage.label}): nothing pending")

    async def _finish_stage(self, session: AsyncSession, run: Run, stage: Stage) -> bool:
        """Close the stage; False when it failed as a whole (nothing done, something failed): the run fails."""
        sr = await repo.stage_result(session, run.id, stage)
        if sr is None or sr.status != "running":
            return True
        now = utcnow()
        sr.status, sr.finished_at = "completed", now
        sr.seconds = round((now - sr.started_at).total_seconds(), 3)
        sr.partial = sr.partial or sr.items_failed > 0
        if sr.items_failed and not sr.items_processed and not sr.items_skipped:
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
            f"{sr.items_failed} failed, {sr.credits} credits in {sr.seconds:.1f}s",
        )
        return True

    async def _review_gate(self, session: AsyncSession, run: Run) -> None:
        run.current_stage = int(Stage.REVIEW)
        ready = len(await pipeline.pending_ids(session, Stage.REVIEW, run.site_id))
        now = utcnow()
        session.add(
            StageRunResult(
                run_id=run.id,
                stage=int(Stage.REVIEW),
                status="completed",
                items_in=ready,
                items_processed=ready,
                failures=[],
                credits=Decimal(0),
                started_at=now,
                finished_at=now,
            )
        )
        run.status, run.completed_at = RunStatus.COMPLETED.value, now
        self._event(session, run, Stage.REVIEW, "completed", f"run completed: {ready} drafts ready for review")

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

    async def history(self, site_id: str, page: int, size: int) -> list[views.RunView]:
        async with self._sessions() as session:
            if await repo.get_site(session, site_id) is None:
                raise NotFoundError(f"site {site_id!r} does not exist")
            runs = (
                await session.scalars(
                    select(Run)
                    .where(Run.site_id == site_id)
                    .order_by(Run.started_at.desc(), Run.id.desc())
                    .offset((page - 1) * size)
                    .limit(size)
                )
            ).all()
            return [await views.run_view(session, r) for r in runs]

    async def activity(self, run_id: str, stage: int | None, limit: int) -> list[views.ActivityView]:
        async with self._sessions() as session:
            if await session.get(Run, run_id) is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            return await views.activity(session, run_id, stage, limit)
