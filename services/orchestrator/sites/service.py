"""Sites and what belongs to them directly: keywords (import, export), the automation config, budget
shares (the site's override and the operator's global default), the activity log, pending work.

The in-transaction functions at the top are this domain's public face for the others (runs, review):
they never touch a site's tables themselves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.config import DEFAULT_SHARES, SiteConfig, SiteConfigPatch, check_shares
from services.orchestrator.errors import NotFoundError
from services.orchestrator.importing import dedupe
from services.orchestrator.schedule import next_run_at
from services.orchestrator.sites import export, keywords, parking, pipeline
from services.orchestrator.sites import repository as repo
from shared.contracts import KeywordIn, utcnow
from shared.db.models import Site, SiteConfigRow
from shared.delivery import Outbox
from shared.entity_events import KeywordAdded, entity_event
from shared.text import normalise
from shared.topics import ENTITY_EVENTS

log_line = repo.log_line
config_row = repo.config_row
claim_due_config = repo.claim_due_config
pending_counts = pipeline.pending_counts
pending_ids = pipeline.pending_ids
record_item_outcomes = parking.record_outcomes  # a batch's result: streaks of failing items, parking
clear_item_streaks = parking.clear_streaks  # items that succeeded (several results' at once)
failing_item = parking.item


def _not_found(site_id: str) -> NotFoundError:
    return NotFoundError(f"site {site_id!r} does not exist")


async def site_of(session: AsyncSession, account_id: str, site_id: str) -> Site:
    """The caller's site, or 404 (unknown and another account's look the same)."""
    site = await repo.get_site(session, account_id, site_id)
    if site is None:
        raise _not_found(site_id)
    return site


async def site_by_id(session: AsyncSession, site_id: str) -> Site | None:
    """Unscoped: for the engine acting on a site it already holds a run or a schedule of."""
    return await repo.get_site_unscoped(session, site_id)


async def global_shares(session: AsyncSession) -> dict[str, int]:
    return (await repo.global_shares(session)) or dict(DEFAULT_SHARES)


async def site_config(session: AsyncSession, site_id: str) -> SiteConfig:
    return SiteConfig.model_validate((await repo.config_row(session, site_id)).config)


@dataclass
class PreparedKeywords:
    """A batch deduplicated and normalised, ready for the database (built in a worker thread)."""

    received: int
    keywords: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    volumes: list[int | None] = field(default_factory=list)
    difficulties: list[int | None] = field(default_factory=list)
    intents: list[str | None] = field(default_factory=list)  # '|'-joined (repository._INSERT_KEYWORDS)
    parents: list[str | None] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # JSON objects


def prepare_keywords(items: list[KeywordIn]) -> PreparedKeywords:
    unique, _ = dedupe(items)
    out = PreparedKeywords(received=len(items))
    for item in unique:
        out.keywords.append(" ".join(item.keyword.split()))
        out.norms.append(normalise(item.keyword))
        out.volumes.append(item.volume)
        out.difficulties.append(item.difficulty)
        out.intents.append("|".join(item.intent) if item.intent else None)
        out.parents.append(" ".join(item.parent_keyword.split()) if item.parent_keyword else None)
        out.metrics.append(json.dumps(item.metrics(), ensure_ascii=False, separators=(",", ":")))
    return out


async def import_in_session(
    session: AsyncSession, site: Site, prepared: PreparedKeywords, source: str, outbox: Outbox | None = None
) -> int:
    """Insert the keywords in the caller's transaction (so an ingest event's inbox row commits with them);
    with an outbox, each new keyword is announced (`keyword_added`) in that same transaction."""
    rows = await repo.insert_keywords(
        session, site.id, source, prepared.keywords, prepared.norms, prepared.volumes, prepared.difficulties,
        prepared.intents, prepared.parents, prepared.metrics,
    )  # fmt: skip
    imported = len(rows)
    if outbox is not None:
        for kid, keyword, volume, difficulty in rows:
            data = KeywordAdded(id=kid, keyword=keyword, volume=volume, difficulty=difficulty, source=source)
            outbox.add(session, ENTITY_EVENTS, site.id, entity_event(site.account_id, site.id, None, data))
    repo.log_line(
        session,
        site.id,
        None,
        None,
        f"imported {imported} keywords from {source} ({prepared.received - imported} duplicates)",
    )
    return imported


@dataclass
class ImportSummary:
    received: int
    imported: int
    duplicates: int


class SiteService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox | None = None) -> None:
        self._sessions = sessions
        self._outbox = outbox  # keyword_added events of imports (issue 15)

    async def create_site(self, account_id: str, name: str, domain: str | None) -> Site:
        async with self._sessions.begin() as session:
            site = Site(id=uuid.uuid4().hex[:16], account_id=account_id, name=name, domain=domain)
            session.add(site)
            await session.flush()
            await session.refresh(site)
        return site

    async def get_site(self, account_id: str, site_id: str) -> Site:
        async with self._sessions() as session:
            return await site_of(session, account_id, site_id)

    async def list_sites(self, account_id: str, page: int, size: int) -> list[Site]:
        async with self._sessions() as session:
            return await repo.list_sites(session, account_id, page, size)

    async def import_keywords(
        self, account_id: str, site_id: str, items: list[KeywordIn], source: str
    ) -> ImportSummary:
        """Deduplicate off the event loop, then insert in chunks in one transaction: all or nothing."""
        prepared = await asyncio.to_thread(prepare_keywords, items)
        async with self._sessions.begin() as session:
            site = await site_of(session, account_id, site_id)
            imported = await import_in_session(session, site, prepared, source, self._outbox)
        if self._outbox is not None:
            self._outbox.committed()
        return ImportSummary(received=len(items), imported=imported, duplicates=len(items) - imported)

    async def export_keywords_csv(self, account_id: str, site_id: str) -> str:
        async with self._sessions() as session:
            await site_of(session, account_id, site_id)
            rows = await keywords.export_rows(session, account_id, site_id)
        return await asyncio.to_thread(export.render_csv, keywords.EXPORT_HEADER, rows)

    async def pipeline_overview(self, account_id: str, site_id: str) -> dict[int, int]:
        async with self._sessions() as session:
            await site_of(session, account_id, site_id)
            return await pipeline.pending_counts(session, site_id)

    # ------------------------------------------------------------------ configuration
    async def get_config(self, account_id: str, site_id: str) -> tuple[SiteConfig, SiteConfigRow, dict[str, int]]:
        async with self._sessions.begin() as session:
            await site_of(session, account_id, site_id)
            row = await repo.config_row(session, site_id)
            return SiteConfig.model_validate(row.config), row, await global_shares(session)

    async def update_config(
        self, account_id: str, site_id: str, patch: SiteConfigPatch
    ) -> tuple[SiteConfig, SiteConfigRow, dict[str, int]]:
        """Raises pydantic's ValidationError when the merged config is invalid as a whole."""
        async with self._sessions.begin() as session:
            await site_of(session, account_id, site_id)
            row = await repo.config_row(session, site_id, lock=True)
            config = patch.apply(SiteConfig.model_validate(row.config))
            now = utcnow()
            row.config = config.model_dump(mode="json")
            row.is_enabled = config.is_enabled
            row.next_run_at = next_run_at(config, now) if config.is_enabled else None
            row.updated_at = now
            repo.log_line(
                session, site_id, None, None, f"config updated: {sorted(patch.model_dump(exclude_unset=True))}"
            )
            return config, row, await global_shares(session)

    async def global_shares(self) -> dict[str, int]:
        async with self._sessions() as session:
            return await global_shares(session)

    async def set_global_shares(self, shares: dict[str, int]) -> dict[str, int]:
        """The operator's default for every site without an override (ValueError when they do not add up)."""
        missing = sorted(set(DEFAULT_SHARES) - set(shares))
        if missing:
            raise ValueError(f"give a share for every AI function; missing {missing}")
        merged = check_shares(shares)
        async with self._sessions.begin() as session:
            await repo.replace_global_shares(session, merged)
        return merged
