"""Scheduled runs. Due configs are claimed with SKIP LOCKED and moved to their next time in the same
transaction that starts the run, so two orchestrator replicas never trigger one schedule twice; a site
with an active run is skipped with the reason recorded."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.config import SiteConfig
from services.orchestrator.errors import ProblemError
from services.orchestrator.runs import repository as repo
from services.orchestrator.runs.context import Engine
from services.orchestrator.runs.start import start_in_session
from services.orchestrator.schedule import next_run_at
from services.orchestrator.sites import service as sites


async def start_next_due(engine: Engine, session: AsyncSession, now: datetime) -> tuple[bool, str | None]:
    """Handle one due schedule: (was there one, the id of the run it started)."""
    row = await sites.claim_due_config(session, now)
    if row is None:
        return False, None
    try:
        config = SiteConfig.model_validate(row.config)
    except ValidationError as exc:  # a stored config that no longer validates must not block others
        row.is_enabled, row.next_run_at = False, None
        row.last_schedule_note = f"schedule disabled at {now.isoformat()}: invalid config: {exc}"[:2000]
        sites.log_line(session, row.site_id, None, None, row.last_schedule_note, "error")
        return True, None
    row.next_run_at = next_run_at(config, now)
    site = await sites.site_by_id(session, row.site_id)
    assert site is not None
    active = await repo.active_run(session, site.id)
    if active is not None:
        row.last_schedule_note = f"skipped at {now.isoformat()}: run {active.id} is {active.status}"
        sites.log_line(session, site.id, None, None, f"scheduled run {row.last_schedule_note}", "warning")
        return True, None
    try:
        async with session.begin_nested():
            run = await start_in_session(engine, session, site, "scheduled")
    except Exception as exc:  # the schedule has moved on either way; the reason is recorded
        reason = (
            exc.detail
            if isinstance(exc, ProblemError)
            else "another run started at the same moment"
            if isinstance(exc, IntegrityError)
            else f"{type(exc).__name__}: {exc}"
        )
        row.last_schedule_note = f"skipped at {now.isoformat()}: {reason}"
        sites.log_line(session, site.id, None, None, f"scheduled run {row.last_schedule_note}", "warning")
        return True, None
    row.last_run_at, row.last_schedule_note = now, f"started {run.id}"
    return True, run.id
