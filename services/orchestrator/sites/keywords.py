"""The CSV export of a site's keywords with what the research tool said about them (issue 17). The keyword
list (filters, pages, the figures as fields) is the content domain's (`content.repository.keywords`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import Cluster, Keyword, Site

# The CSV export's columns: the catalogue as imported, with the tools' figures flattened into cells.
EXPORT_HEADER = (
    "keyword", "volume", "difficulty", "intent", "parent_keyword", "cpc", "currency", "competition",
    "competition_level", "trend", "serp_features", "clicks", "ctr", "position", "cluster", "source", "created_at",
)  # fmt: skip


def export_row(keyword: Keyword, cluster: str | None) -> list[object]:
    def joined(values: list[Any] | None) -> str:
        return ", ".join(str(v) for v in values) if values else ""

    m = keyword.metrics or {}
    return [
        keyword.keyword, keyword.volume, keyword.difficulty, joined(keyword.intent), keyword.parent_keyword,
        m.get("cpc"), m.get("currency"), m.get("competition"), m.get("competition_level"), joined(m.get("trend")),
        joined(m.get("serp_features")), m.get("clicks"), m.get("ctr"), m.get("position"), cluster, keyword.source,
        keyword.created_at,
    ]  # fmt: skip


async def export_rows(session: AsyncSession, account_id: str, site_id: str) -> list[list[object]]:
    stmt = (
        select(Keyword, Cluster.name)
        .join(Site, Site.id == Keyword.site_id)
        .outerjoin(Cluster, Cluster.id == Keyword.cluster_id)
        .where(Keyword.site_id == site_id, Site.account_id == account_id)
        .order_by(Keyword.id)
    )
    return [export_row(keyword, cluster) for keyword, cluster in await session.execute(stmt)]
