"""What every step of the engine needs besides its session, and the one way it records what happened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.costs import CostTable
from services.orchestrator.runs.census import WorkerCensus
from services.orchestrator.sites import service as sites
from shared.contracts import RunEvent, RunStatus, Stage, utcnow
from shared.db.models import Run
from shared.delivery import Outbox
from shared.settings import Settings
from shared.topics import RUN_EVENTS, STAGE_COMMAND_TOPICS

MAX_RECORDED_FAILURES = 200


@dataclass(frozen=True)
class Engine:
    outbox: Outbox
    settings: Settings
    costs: CostTable
    census: WorkerCensus | None = None  # None: one worker process per stage is assumed

    def release_window(self, stage: Stage) -> int:
        """Batches of one run out at once in `stage`: the clustering window in stage 1 (one site's batches are
        clustered one pass after another, by one process); else the release window, per worker process of
        the stage unless `inflight_batches_per_run` fixes it."""
        if stage is Stage.CLUSTER:
            return self.settings.clustering_window
        if self.settings.inflight_batches_per_run is not None or self.census is None:
            return self.settings.release_window
        return self.settings.release_window * self.census.processes(STAGE_COMMAND_TOPICS[int(stage)])

    def event(self, session: AsyncSession, run: Run, stage: int, event: str, detail: str, level: str = "info") -> None:
        """An activity line, the optional run log file, and a RunEvent on the outbox (same transaction)."""
        sites.log_line(session, run.site_id, run.id, stage or None, detail, level)
        if self.settings.run_log_dir is not None:
            path = Path(self.settings.run_log_dir) / f"{run.id}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{utcnow().isoformat()} stage={stage} {level} {detail}\n")
        self.notify(session, run, stage, event, detail)

    def notify(self, session: AsyncSession, run: Run, stage: int, event: str, detail: str) -> None:
        """Only the RunEvent (no activity line): progress inside a stage, for live views (the dashboard)."""
        self.outbox.add(
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
