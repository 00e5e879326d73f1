"""A person's catalogue edits, each inside the caller's transaction: keyword status, and cluster names and
membership (rename, move, merge, split).

Ownership. The clusterer assigns keywords to clusters automatically while stage 1 runs; a person curates
them here. The two never overlap: every membership edit is refused (409) while the site's active run is
in stage 1 (the clusterer may join keywords to any cluster of the site then) and for the clusters that
stage 2 holds. After an edit the changed clusters are brought back to what the clusterer itself keeps:
`size` = the number of member keywords, `centroid` = the L2-normalised mean of the members' stored
embeddings (no model call: the vectors are in `keyword_embeddings`). So the clusterer's next run compares
new keywords against centroids that match the membership a person chose, with nothing left to recompute.
A cluster emptied by an edit is deleted, or, when ideas refer to it, kept with size 0 and a zero centroid
(no keyword is ever similar to it, and stage 2 skips it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.content import repository as repo
from services.orchestrator.errors import ConflictError, NotFoundError
from services.orchestrator.runs import service as runs
from services.orchestrator.sites import service as sites
from shared.contracts import Stage, utcnow
from shared.db.models import Cluster, Keyword
from shared.text import normalise


@dataclass
class Changed:
    """The clusters an edit touched: kept ones (to show), removed ones, emptied ones kept for their ideas."""

    kept: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    emptied: list[int] = field(default_factory=list)
    keywords: int = 0  # keywords whose status changed


async def _held(session: AsyncSession, site_id: str) -> runs.HeldItems | None:
    return await runs.held_items(session, site_id)


async def check_membership_free(session: AsyncSession, site_id: str, cluster_ids: set[int]) -> None:
    """409 while stage 1 may assign keywords to this site's clusters, or stage 2 holds one of these."""
    held = await _held(session, site_id)
    if held is None:
        return
    if held.stage == Stage.CLUSTER:
        raise ConflictError(held.reason("every cluster of this site"), held_by_run=held.run_id, stage=held.stage)
    if held.stage == Stage.IDEATE and (busy := sorted(cluster_ids & held.item_ids)):
        raise ConflictError(held.reason(f"cluster {busy[0]}"), held_by_run=held.run_id, stage=held.stage)


async def _keywords(session: AsyncSession, site_id: str, ids: list[int], lock: bool = False) -> list[Keyword]:
    found = await repo.keywords_by_id(session, site_id, ids, lock=lock)
    missing = sorted(set(ids) - {k.id for k in found})
    if missing:
        raise NotFoundError(f"keyword {missing[0]} does not exist in site {site_id!r}", missing=missing[:100])
    return found


async def _relock(session: AsyncSession, site_id: str, seen: list[Keyword], locked: set[int]) -> None:
    """Lock the keywords after their clusters (the clusterer's order: cluster, then keywords) and make sure
    none changed cluster since they were read."""
    before = {k.id: k.cluster_id for k in seen}
    for keyword in await _keywords(session, site_id, list(before), lock=True):
        if keyword.cluster_id != before[keyword.id] and keyword.cluster_id not in locked:
            raise ConflictError(f"keyword {keyword.id} changed cluster meanwhile; try again")


async def _clusters(session: AsyncSession, site_id: str, ids: set[int]) -> dict[int, Cluster]:
    locked = await repo.lock_clusters(session, site_id, list(ids))
    missing = sorted(ids - set(locked))
    if missing:
        raise NotFoundError(f"cluster {missing[0]} does not exist in site {site_id!r}")
    return locked


async def refresh(session: AsyncSession, clusters: list[Cluster], changed: Changed) -> None:
    """Size and centroid from the members, as the clusterer keeps them; an emptied cluster goes (or stays
    empty when ideas refer to it)."""
    await session.flush()
    for cluster in clusters:
        size = await repo.member_count(session, cluster.id)
        if not size and not await repo.has_ideas(session, cluster.id):
            await session.delete(cluster)
            changed.removed.append(cluster.id)
            continue
        vectors = await repo.member_vectors(session, cluster.id) if size else []
        cluster.size = size
        cluster.centroid = await asyncio.to_thread(repo.mean_centroid, vectors, cluster.centroid)
        (changed.kept if size else changed.emptied).append(cluster.id)
    await session.flush()


# ---------------------------------------------------------------- keywords
async def set_enabled(session: AsyncSession, site_id: str, ids: list[int], enabled: bool) -> Changed:
    keywords = await _keywords(session, site_id, ids)
    held = await _held(session, site_id)
    if held is not None and held.stage == Stage.CLUSTER and (busy := sorted(set(ids) & held.item_ids)):
        raise ConflictError(held.reason(f"keyword {busy[0]}"), held_by_run=held.run_id, stage=held.stage)
    changing = [k for k in keywords if (k.disabled_at is None) == (not enabled)]
    changed = Changed()
    if not changing:
        return changed
    left = {k.cluster_id for k in changing if k.cluster_id is not None}
    if not enabled and left:
        await check_membership_free(session, site_id, left)
    clusters = await _clusters(session, site_id, left) if not enabled else {}
    await _relock(session, site_id, changing, set(clusters))
    await repo.set_disabled(session, [k.id for k in changing], None if enabled else utcnow())
    changed.keywords = len(changing)
    await refresh(session, list(clusters.values()), changed)
    verb = "enabled" if enabled else "disabled"
    sample = ", ".join(repr(k.keyword) for k in changing[:5])
    sites.log_line(session, site_id, None, None, f"{len(changing)} keywords {verb} by a person: {sample}")
    return changed


# ---------------------------------------------------------------- clusters
def clean_name(name: str) -> tuple[str, str]:
    shown = " ".join(name.split())
    return shown, normalise(shown)


async def rename(session: AsyncSession, site_id: str, cluster_id: int, name: str) -> Changed:
    cluster = (await _clusters(session, site_id, {cluster_id}))[cluster_id]
    held = await _held(session, site_id)
    if held is not None and held.stage == Stage.IDEATE and cluster_id in held.item_ids:
        raise ConflictError(held.reason(f"cluster {cluster_id}"), held_by_run=held.run_id, stage=held.stage)
    shown, norm = clean_name(name)
    other = await repo.cluster_by_name(session, site_id, norm)
    if other is not None and other.id != cluster_id:
        raise ConflictError(f"cluster {other.id} of this site is already named {other.name!r}", cluster_id=other.id)
    old = cluster.name
    cluster.name, cluster.name_norm = shown, norm
    sites.log_line(session, site_id, None, None, f"cluster {cluster_id} renamed by a person: {old!r} → {shown!r}")
    return Changed(kept=[cluster_id])


async def move(session: AsyncSession, site_id: str, cluster_id: int, ids: list[int]) -> Changed:
    """Keywords (clustered elsewhere, or still pending) into cluster `cluster_id`."""
    keywords = await _keywords(session, site_id, ids)
    disabled = [k for k in keywords if k.disabled_at is not None]
    if disabled:
        raise ConflictError(f"keyword {disabled[0].id} is disabled; enable it before moving it")
    sources = {k.cluster_id for k in keywords if k.cluster_id is not None} - {cluster_id}
    await check_membership_free(session, site_id, sources | {cluster_id})
    clusters = await _clusters(session, site_id, sources | {cluster_id})
    await _relock(session, site_id, keywords, set(clusters))
    moving = [k.id for k in keywords if k.cluster_id != cluster_id]
    changed = Changed()
    if moving:
        await repo.assign(session, moving, cluster_id, utcnow())
        await refresh(session, [clusters[i] for i in sorted(clusters)], changed)
        sites.log_line(
            session,
            site_id,
            None,
            None,
            f"{len(moving)} keywords moved by a person into cluster {cluster_id} ({clusters[cluster_id].name!r})",
        )
    else:
        changed.kept.append(cluster_id)
    return changed


async def merge(session: AsyncSession, site_id: str, into_id: int, from_id: int) -> Changed:
    if into_id == from_id:
        raise ConflictError(f"cluster {into_id} cannot be merged into itself")
    await check_membership_free(session, site_id, {into_id, from_id})
    clusters = await _clusters(session, site_id, {into_id, from_id})
    ids = await repo.member_ids(session, from_id)
    if ids:
        await repo.assign(session, ids, into_id, utcnow())
    changed = Changed()
    await refresh(session, [clusters[into_id], clusters[from_id]], changed)
    sites.log_line(
        session,
        site_id,
        None,
        None,
        f"cluster {from_id} ({clusters[from_id].name!r}, {len(ids)} keywords) merged by a person into "
        f"cluster {into_id} ({clusters[into_id].name!r})",
    )
    return changed


async def split(session: AsyncSession, site_id: str, cluster_id: int, ids: list[int], name: str) -> tuple[Changed, int]:
    """The chosen keywords of cluster `cluster_id` become a new cluster named `name`; returns its id."""
    await check_membership_free(session, site_id, {cluster_id})
    source = (await _clusters(session, site_id, {cluster_id}))[cluster_id]
    keywords = await _keywords(session, site_id, ids, lock=True)
    strangers = [k.id for k in keywords if k.cluster_id != cluster_id]
    if strangers:
        raise ConflictError(f"keyword {strangers[0]} is not in cluster {cluster_id}; split only moves its members")
    if len(keywords) >= await repo.member_count(session, cluster_id):
        raise ConflictError(f"a split must leave at least one keyword in cluster {cluster_id}; rename it instead")
    shown, norm = clean_name(name)
    if (other := await repo.cluster_by_name(session, site_id, norm)) is not None:
        raise ConflictError(f"cluster {other.id} of this site is already named {other.name!r}", cluster_id=other.id)
    new = Cluster(
        site_id=site_id,
        run_id=None,
        name=shown,
        name_norm=norm,
        description=f"split from {source.name}",
        intent=source.intent,
        centroid=source.centroid,
        size=0,
    )
    session.add(new)
    await session.flush()
    await repo.assign(session, [k.id for k in keywords], new.id, utcnow())
    changed = Changed()
    await refresh(session, [source, new], changed)
    sites.log_line(
        session,
        site_id,
        None,
        None,
        f"cluster {cluster_id} ({source.name!r}) split by a person: {len(keywords)} keywords into new cluster "
        f"{new.id} ({shown!r})",
    )
    return changed, new.id
