"""What the publisher reports, onto the schedule: PublishResult (published or failed) and PublicationStatusChanged
(the status sync saw a post change on WordPress). Each message is recorded once (inbox, same transaction) and
leaves a line in the activity log of the draft's run."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.publishing import repository as repo
from services.orchestrator.publishing.scheduling import REVIEW_STAGE
from services.orchestrator.sites import service as sites
from shared.contracts import PublicationState, PublicationStatusChanged, PublishResult, RemoteStatus, utcnow
from shared.db.models import ScheduledPublication
from shared.delivery import claim_inbox

RESULTS_CONSUMER = "orchestrator.publish-results"
STATUS_CONSUMER = "orchestrator.publish-status"


def _log(session: AsyncSession, entry: ScheduledPublication, message: str, level: str = "info") -> None:
    sites.log_line(session, entry.site_id, entry.run_id, REVIEW_STAGE, message[:2000], level)


async def record_result(session: AsyncSession, result: PublishResult) -> bool:
    """False for a duplicate delivery. A result for a draft the schedule does not hold (a command sent by
    hand) is acknowledged and left alone."""
    if not await claim_inbox(session, RESULTS_CONSUMER, result.message_id):
        return False
    entry = await repo.entry(session, result.draft_id, lock=True)
    if entry is None or entry.site_id != result.site_id:
        return True
    now = utcnow()
    if result.state == PublicationState.PUBLISHED:
        # Success is the truth whichever command it answers: the post exists.
        entry.state, entry.remote_post_id, entry.url = "published", result.remote_post_id, result.url
        entry.remote_status = result.remote_status.value if result.remote_status else None
        entry.published_at = entry.published_at or result.occurred_at
        entry.reason = entry.reason_code = entry.retry_at = None
        entry.updated_at = now
        earlier = " (it was already published by an earlier command)" if result.already_published else ""
        notes = f"; notes: {'; '.join(result.notes)}" if result.notes else ""
        post = f"post {result.remote_post_id}: {result.url}"
        _log(session, entry, f"draft {entry.draft_id} published on WordPress as {post}{earlier}{notes}")
        return True
    if entry.command_id != result.command_id or entry.state != "publishing":
        _log(
            session, entry,
            f"draft {entry.draft_id}: an earlier publish command's failure arrived late and is ignored "
            f"(the draft is {entry.state}): {result.reason}",
            "warning",
        )  # fmt: skip
        return True
    entry.state, entry.reason, entry.reason_code, entry.updated_at = "failed", result.reason, "publish_failed", now
    again = "" if result.permanent else " (the site seemed down: publish it now again once it is back)"
    _log(session, entry, f"draft {entry.draft_id} failed to publish: {result.reason}{again}", "error")
    return True


async def record_status(session: AsyncSession, event: PublicationStatusChanged) -> bool:
    """False for a duplicate delivery; the post's WordPress status and address go onto the draft."""
    if not await claim_inbox(session, STATUS_CONSUMER, event.message_id):
        return False
    entry = await repo.entry(session, event.draft_id, lock=True)
    if entry is None or entry.site_id != event.site_id:
        return True
    entry.remote_status = event.remote_status.value
    if event.url:
        entry.url = event.url
    entry.updated_at = utcnow()
    gone = event.remote_status in {RemoteStatus.TRASH, RemoteStatus.DELETED}
    before = event.previous_status.value if event.previous_status else "unknown"
    moved = f", now at {event.url}" if event.url and event.url != event.previous_url else ""
    _log(
        session, entry,
        f"draft {entry.draft_id}: WordPress post {event.remote_post_id} is now {event.remote_status.value} "
        f"(was {before}){moved}",
        "warning" if gone else "info",
    )  # fmt: skip
    return True
