"""What every step of the engine needs besides its session, and the one way it records what happened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.costs import CostTable
from services.orchestrator.sites import service as sites
from shared.contracts import RunEvent, RunStatus, utcnow
from shared.db.models import Run
from shared.delivery import Outbox
from shared.settings import Settings
from shared.topics import RUN_EVENTS

MAX_RECORDED_FAILURES = 200


@dataclass(frozen=True)
class Engine:
    outbox: Outbox
    settings: Settings
    costs: CostTable

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
