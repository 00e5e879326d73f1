"""The keyword view: a site's keywords with what the research tool said about them (issue 17), and the
filters that use the indexed columns (intent, parent keyword)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import KEYWORD_METRICS
from shared.db.models import Cluster, Keyword, Site

KeywordStatus = Literal["pending", "clustered"]


class KeywordView(BaseModel):
    id: int
    keyword: str
    volume: int | None
    difficulty: int | None
    intent: list[str] | None
    parent_keyword: str | None
    cpc: float | None = None
    currency: str | None = None
    competition: float | None = None
    competition_level: str | None = None
    trend: list[float] | None = None
    serp_features: list[str] | None = None
    clicks: int | None = None
    ctr: float | None = None
    position: float | None = None
    extra: dict[str, str] | None = None
    source: str
    status: KeywordStatus
    cluster_id: int | None
    cluster: str | None
    created_at: AwareDatetime


class KeywordFilter(BaseModel):
    intent: str | None = None
    parent_keyword: str | None = None
    status: KeywordStatus | None = None


async def _rows(
    session: AsyncSession,
    account_id: str,
    site_id: str,
    where: KeywordFilter,
    page: int | None = None,
    size: int | None = None,
) -> list[tuple[Keyword, str | None]]:
    stmt = (
        select(Keyword, Cluster.name)
        .join(Site, Site.id == Keyword.site_id)
        .outerjoin(Cluster, Cluster.id == Keyword.cluster_id)
        .where(Keyword.site_id == site_id, Site.account_id == account_id)
        .order_by(Keyword.id)
    )
    if where.intent is not None:
        stmt = stmt.where(Keyword.intent.contains([where.intent]))  # intent @> ARRAY[...]: the GIN index
    if where.parent_keyword is not None:
        stmt = stmt.where(func.lower(Keyword.parent_keyword) == " ".join(where.parent_keyword.split()).lower())
    if where.status == "pending":
        stmt = stmt.where(Keyword.cluster_id.is_(None))
    elif where.status == "clustered":
        stmt = stmt.where(Keyword.cluster_id.is_not(None))
    if page is not None and size is not None:
        stmt = stmt.offset((page - 1) * size).limit(size)
    return [(keyword, cluster) for keyword, cluster in await session.execute(stmt)]


def view_of(keyword: Keyword, cluster: str | None) -> KeywordView:
    metrics = {k: v for k, v in (keyword.metrics or {}).items() if k in KEYWORD_METRICS}
    return KeywordView(
        id=keyword.id,
        keyword=keyword.keyword,
        volume=keyword.volume,
        difficulty=keyword.difficulty,
        intent=keyword.intent,
        parent_keyword=keyword.parent_keyword,
        source=keyword.source,
        status="clustered" if keyword.cluster_id is not None else "pending",
        cluster_id=keyword.cluster_id,
        cluster=cluster,
        created_at=keyword.created_at,
        **metrics,
    )


async def keyword_page(
    session: AsyncSession, account_id: str, site_id: str, where: KeywordFilter, page: int, size: int
) -> list[KeywordView]:
    rows = await _rows(session, account_id, site_id, where, page, size)
    return [view_of(keyword, cluster) for keyword, cluster in rows]


# The CSV export's columns: the catalogue as imported, with the tools' figures flattened into cells.
EXPORT_HEADER = (
    "keyword", "volume", "difficulty", "intent", "parent_keyword", "cpc", "currency", "competition",
    "competition_level", "trend", "serp_features", "clicks", "ctr", "position", "cluster", "source", "created_at",
)  # fmt: skip


def export_row(view: KeywordView) -> list[object]:
    def joined(values: list[Any] | None) -> str:
        return ", ".join(str(v) for v in values) if values else ""

    return [
        view.keyword, view.volume, view.difficulty, joined(view.intent), view.parent_keyword, view.cpc, view.currency,
        view.competition, view.competition_level, joined(view.trend), joined(view.serp_features), view.clicks,
        view.ctr, view.position, view.cluster, view.source, view.created_at,
    ]  # fmt: skip


async def export_rows(session: AsyncSession, account_id: str, site_id: str) -> list[list[object]]:
    rows = await _rows(session, account_id, site_id, KeywordFilter())
    return [export_row(view_of(keyword, cluster)) for keyword, cluster in rows]
