"""A site's WordPress connection through the API: create or replace, read (never the password), delete, test.

The application password is encrypted with CONTENTLINE_SECRET_KEY (shared.secrets) before it is stored, or
only a reference to it is stored (`env:NAME`, `file:/path`); it is never returned or logged. "Test connection"
runs the publisher's own check (services.publisher.connection: the same client and the same rules the
publisher applies when it publishes); it is a library call with no Kafka or state of its own, so the
orchestrator imports it rather than keep a second copy that could drift.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.errors import NotFoundError
from services.orchestrator.publishing import repository as repo
from services.orchestrator.publishing.scheduling import NO_CONNECTION
from services.orchestrator.publishing.views import ConnectionIn, ConnectionTestView, ConnectionView
from services.orchestrator.sites import service as sites
from services.publisher.connection import check_site
from shared.contracts import utcnow
from shared.db.models import WordPressConnection
from shared.secrets import encrypt
from shared.settings import Settings


class ConnectionService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def get(self, account_id: str, site_id: str) -> ConnectionView | None:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
            row = await repo.connection(session, site_id)
            return ConnectionView.of(row) if row is not None else None

    async def put(self, account_id: str, site_id: str, body: ConnectionIn) -> ConnectionView:
        """Create or replace. Raises shared.secrets.SecretError when the server cannot encrypt (no key)."""
        encrypted = (
            encrypt(body.app_password.get_secret_value(), self._settings.secret_key) if body.app_password else None
        )
        async with self._sessions.begin() as session:
            await sites.site_of(session, account_id, site_id)
            row = await repo.connection(session, site_id, lock=True)
            now = utcnow()
            if row is None:
                row = WordPressConnection(site_id=site_id, created_at=now)
                session.add(row)
            row.base_url, row.username = body.base_url, body.username
            row.app_password_encrypted, row.app_password_ref = encrypted, body.app_password_ref
            row.default_post_status = body.default_post_status
            row.category_mapping = body.category_mapping.model_dump(mode="json")
            row.tag_mapping = body.tag_mapping.model_dump(mode="json")
            row.updated_at = now
            # Drafts that waited for a connection look for a slot at the next tick.
            await repo.retry_now(session, site_id, now, codes=[NO_CONNECTION])
            note = f"WordPress connection set: {body.base_url} as {body.username}"
            sites.log_line(session, site_id, None, None, note)
            await session.flush()
            await session.refresh(row)
            return ConnectionView.of(row)

    async def delete(self, account_id: str, site_id: str) -> None:
        async with self._sessions.begin() as session:
            await sites.site_of(session, account_id, site_id)
            if not await repo.delete_connection(session, site_id):
                raise NotFoundError(f"site {site_id!r} has no WordPress connection")
            sites.log_line(session, site_id, None, None, "WordPress connection removed")

    async def test(self, account_id: str, site_id: str) -> ConnectionTestView:
        async with self._sessions() as session:
            await sites.site_of(session, account_id, site_id)
        check = await check_site(self._sessions, self._settings, site_id)
        return ConnectionTestView(
            site_id=site_id,
            ok=check.ok,
            problem=check.problem,
            site_name=check.site_name,
            user=check.user,
            roles=list(check.roles),
            marker_plugin=check.marker_plugin,
            seo_fields=check.seo_fields,
            notes=list(check.notes),
        )
