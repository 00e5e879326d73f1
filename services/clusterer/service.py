"""Stage 1 logic: embed a batch of keywords, join them to the site's clusters or form new ones, name new ones.

Existing clusters' centroids are compared with every new keyword, so keywords that arrive in
different batches or runs land in the same cluster. The model is called once per NEW cluster, only to
name, describe and label its intent. Keywords of one site arrive in order on one partition (keyed by
site), and the worker's pool gives each batch its turn in that order: its attempt is counted and its
keywords loaded beforehand, everything from reading the site's clusters to committing the result happens in
its turn, together with the batches loaded and waiting behind it (one pass: services/clusterer/convoy.py).
The space row lock keeps the site's vector statistics right even if two batches ever overlap.

The decision "does this keyword join that cluster" needs no threshold from anyone (issue 10): vectors are
centred on the site's mean vector of the configured embedding model and compared against a threshold
calibrated from the site's own keywords (services/clusterer/calibration.py); the site setting
`similarity_threshold` stays as an explicit override (a raw cosine, as before). A change of embedding model
(or of its dimension) rebuilds the site's space first (services/clusterer/space.py): vectors of two models
never meet.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clusterer import repository as repo
from services.clusterer.calibration import WARM_UP, Calibration, SpaceStats, decide
from services.clusterer.clustering import Vectors, assign, merged_mean
from services.clusterer.convoy import Convoy, Rider
from services.clusterer.space import Spaces
from shared import prompts
from shared.ai import AiClient, AiError, Usage
from shared.contracts import ItemFailure, StageCommand, StageOptions
from shared.contracts import Usage as BatchUsage
from shared.entity_events import ClusterCreated, entity_event
from shared.text import normalise
from shared.turns import current_turn
from shared.worker import BatchOutcome

log = logging.getLogger(__name__)

# Most keywords one pass clusters (with the batches waiting behind its own). After a site's warm-up the
# vectors are stored, so a pass costs one assignment and a naming round whose calls run side by side (bounded
# by the AI client's slots); every pass more is a turn on the run's critical path (its reads, its transaction,
# the wait for the next batches). Passes of one embedding request (512) made 1,500 keywords four or five
# turns; with the warm-up's size they are three (issue 13): the first pass takes what has loaded when it starts,
# the clustering window (64 batches) bounds the others.
PASS_KEYWORDS = WARM_UP

Intent = Literal["informational", "commercial", "transactional", "navigational"]


class ClusterLabel(BaseModel):
    name: str = Field(description="Short topic name for the cluster, 2-6 words, no quotes")
    description: str = Field(description="One sentence: what searchers of these keywords want")
    intent: Intent


def label_system(options: StageOptions) -> str:
    return prompts.render("cluster_label.system", options)


def label_prompt(keywords: list[str], options: StageOptions) -> str:
    return prompts.render("cluster_label.user", options, keywords=", ".join(keywords[:30]))


@dataclass
class NewCluster:
    label: ClusterLabel
    keyword_ids: list[int]
    vectors: Vectors


def progress_logger(site_id: str, min_rows: int = 5000) -> Callable[[int, int], None]:
    """Log every tenth of a large clustering pass, so a long one is visible while it works."""
    last = -1

    def report(done: int, total: int) -> None:
        nonlocal last
        tenth = done * 10 // max(total, 1)
        if total >= min_rows and tenth != last:
            last = tenth
            log.info("site %s: clustered %d of %d keywords", site_id, done, total)

    return report


@dataclass
class Member:
    """One command of a pass: its keywords loaded, those already clustered by an earlier delivery apart."""

    cmd: StageCommand
    keywords: list[repo.KeywordRow]
    already_done: set[int]


@dataclass
class _Batch:
    """This batch's keywords and their vectors, in the space the site's clusters live in."""

    keywords: list[repo.KeywordRow]
    vectors: Vectors
    fresh: dict[int, Vectors]  # fetched now, not yet stored (the batch's and those fetched ahead)
    stats: SpaceStats  # the space including `fresh`
    clusters: list[repo.ClusterRow]


class ClustererService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ai: AiClient, embedding_model: str, prefetch: int = 512
    ) -> None:
        self._sessions = sessions
        self._ai = ai
        self._model = embedding_model
        self._prefetch = prefetch
        self._spaces = Spaces(sessions, ai, embedding_model)
        self._convoy = Convoy(max_keywords=max(PASS_KEYWORDS, prefetch))

    async def work(self, cmd: StageCommand) -> BatchOutcome:
        async with self._sessions() as session:
            keywords, already_done = await repo.load_keywords(session, cmd.site_id, cmd.item_ids)
        # The site's earlier batches first: from here to the commit of this batch's result, the site's space,
        # clusters and stored vectors must be the ones those batches left (shared.parallel turns). A pass ahead
        # may take this batch along instead (services/clusterer/convoy.py).
        turn = current_turn()
        if turn is None:
            return await self._pass([Member(cmd, keywords, already_done)], [])
        carried = await self._convoy.wait(Rider(cmd, keywords, already_done, turn))
        if carried is not None:
            return carried
        riders = await self._convoy.riders_for(turn, cmd, len(keywords))
        if riders:
            log.info(
                "site %s: batch %d clusters with the %d batches waiting behind it (%s)",
                cmd.site_id,
                cmd.batch_seq,
                len(riders),
                ", ".join(str(r.cmd.batch_seq) for r in riders),
            )
        members = [Member(cmd, keywords, already_done), *(Member(r.cmd, r.keywords, r.already_done) for r in riders)]
        return await self._pass(members, riders)

    async def _pass(self, members: list[Member], riders: list[Rider]) -> BatchOutcome:
        """Cluster the members' keywords in one pass. Returns the first member's outcome: the model calls, the
        persist for all of them, and the riders' outcomes to record in the same transaction (`along`)."""
        cmd = members[0].cmd
        usage = Usage()
        outcomes = [BatchOutcome(skipped=len(m.already_done)) for m in members]
        outcome = outcomes[0]
        outcome.calls = usage.records
        owner: dict[int, int] = {}  # keyword id -> index of its member
        keywords: list[repo.KeywordRow] = []
        for i, m in enumerate(members):
            missing = set(m.cmd.item_ids) - {k.id for k in m.keywords} - m.already_done
            outcomes[i].failures += [ItemFailure(item_id=k, reason="keyword not found for this site") for k in missing]
            owner.update((k.id, i) for k in m.keywords)
            keywords += m.keywords
        if riders:  # their results commit with this pass; then they are let go
            outcome.along = [(r.cmd, o) for r, o in zip(riders, outcomes[1:], strict=True)]
            outcome.committed = functools.partial(self._convoy.deliver, riders, outcomes[1:])
        if not keywords:
            return outcome
        try:
            batch = await self._batch(cmd, keywords, [i for m in members for i in m.cmd.item_ids], usage)
        except AiError as exc:
            # Only this batch fails: the riders keep waiting and try on their own (failure isolation).
            outcome.along, outcome.committed = [], None
            outcome.failures += [
                ItemFailure(item_id=k.id, reason=exc.reason, permanent=not exc.transient) for k in members[0].keywords
            ]
            return outcome

        stats = batch.stats
        calibration: Calibration | None = None
        override = cmd.options.similarity_threshold
        if override is None and stats.due():
            calibration = await self._spaces.calibrate(cmd.site_id, stats, batch.fresh)
            stats.calibrated(calibration)
        decision = decide(stats, override)
        # A cluster without a centroid in this space, or emptied by an edit (zero vector), attracts nothing.
        clusters = [
            c
            for c in batch.clusters
            if c.embedding_model == self._model and c.centroid.size == stats.dim and np.any(c.centroid)
        ]
        centroids = (
            decision.view(np.vstack([c.centroid for c in clusters]))
            if clusters
            else np.zeros((0, stats.dim), np.float32)
        )
        order = sorted(range(len(keywords)), key=lambda i: (-keywords[i].volume, keywords[i].keyword))
        plan = await asyncio.to_thread(
            functools.partial(assign, progress=progress_logger(cmd.site_id)),
            decision.view(batch.vectors),
            centroids,
            decision.threshold,
            cmd.options.min_cluster_size,
            order,
        )
        vectors = batch.vectors

        def fail(i: int, reason: str, permanent: bool = True) -> None:
            k = keywords[i].id
            outcomes[owner[k]].failures.append(ItemFailure(item_id=k, reason=reason, permanent=permanent))

        labels = await asyncio.gather(
            *(self._label([keywords[i].keyword for i in group], cmd.options, usage) for group in plan.new_groups)
        )
        new_clusters: list[NewCluster] = []
        for group, label in zip(plan.new_groups, labels, strict=True):
            if isinstance(label, AiError):
                for i in group:
                    fail(i, label.reason)
                continue
            new_clusters.append(NewCluster(label, [keywords[i].id for i in group], vectors[group]))
        for i in plan.outliers:
            fail(i, "outlier: no cluster within the similarity threshold", permanent=False)
        joins = {
            clusters[idx].id: ([keywords[i].id for i in rows], vectors[rows]) for idx, rows in plan.existing.items()
        }
        processed_ids = [k for ids, _ in joins.values() for k in ids] + [k for c in new_clusters for k in c.keyword_ids]
        for k in processed_ids:
            outcomes[owner[k]].processed += 1

        async def persist(session: AsyncSession) -> None:
            await self._store_vectors(session, cmd.site_id, stats.dim, batch.fresh, calibration)
            members_of = dict(joins)  # every cluster this pass adds to, joined in one go at the end
            rows = [
                repo.NewClusterRow(
                    c.label.name.strip()[:200],
                    normalise(c.label.name),
                    c.label.description,
                    c.label.intent,
                    merged_mean(None, 0, c.vectors),
                )
                for c in new_clusters
            ]
            inserted = await repo.insert_clusters(session, cmd.site_id, cmd.run_id, rows, self._model)
            # Same name as an existing cluster (or as another of this pass): merged into it.
            existing = await repo.lock_clusters_by_name(
                session, cmd.site_id, sorted({r.name_norm for r in rows} - set(inserted))
            )
            for c, row in zip(new_clusters, rows, strict=True):
                new_id = inserted.get(row.name_norm) or existing[row.name_norm]
                ids, vecs = members_of.get(new_id, ([], c.vectors[:0]))
                members_of[new_id] = (ids + c.keyword_ids, np.vstack([vecs, c.vectors]))
            sizes = await self._join(session, members_of)
            first: dict[str, repo.NewClusterRow] = {}  # the row inserted under each name: the first with it
            for row in rows:
                first.setdefault(row.name_norm, row)
            for name_norm, new_id in inserted.items():
                made = first[name_norm]
                data = ClusterCreated(id=new_id, name=made.name, intent=made.intent, size=sizes[new_id])
                outcome.events.append(entity_event(cmd.account_id, cmd.site_id, cmd.run_id, data))
            outcome.created = len(inserted)

        outcome.persist = persist
        outcome.usage = BatchUsage(
            model_calls=len(usage.records),
            prompt_tokens=sum(r.prompt_tokens for r in usage.records if r.kind == "chat"),
            completion_tokens=sum(r.completion_tokens for r in usage.records),
            embedding_tokens=sum(r.prompt_tokens for r in usage.records if r.kind == "embeddings"),
            keywords_clustered=outcome.processed,
        )
        for rider in outcomes[1:]:
            rider.usage = BatchUsage(keywords_clustered=rider.processed)
        return outcome

    async def _batch(
        self, cmd: StageCommand, keywords: list[repo.KeywordRow], item_ids: list[int], usage: Usage
    ) -> _Batch:
        """The batch's vectors in the site's current space: rebuilds the space first when the site's clusters
        were made with another embedding model, or when the model now answers with another dimension."""
        for attempt in range(2):
            async with self._sessions() as session:
                space = await repo.load_space(session, cmd.site_id, self._model)
                clusters = await repo.load_clusters(session, cmd.site_id)
            dim = space.dim if space is not None else None
            # No space yet (a new site, a new model, or vectors stored before spaces existed), or clusters made
            # with another model or before spaces existed: (re)build the space from what is stored.
            if space is None or any(c.embedding_model != self._model for c in clusters):
                dim = await self._spaces.rebuild(cmd.site_id, dim, usage, {})
                async with self._sessions() as session:
                    space = await repo.load_space(session, cmd.site_id, self._model)
                    clusters = await repo.load_clusters(session, cmd.site_id)
            async with self._sessions() as session:
                cached = await repo.load_embeddings(session, [k.id for k in keywords], self._model, dim)
            fresh = await self._fetch(cmd, keywords, item_ids, cached, dim, space, usage)
            fresh_dims = {int(v.shape[0]) for v in fresh.values()}
            if dim is not None and fresh_dims and fresh_dims != {dim}:
                if attempt:
                    raise AiError(f"the embedding model keeps changing its dimension ({sorted(fresh_dims)})", False)
                # Same model, other dimension (e.g. `dimensions` no longer sent): a new space. Its first
                # vectors are the ones just fetched; then this batch starts over in it.
                await self._spaces.rebuild(cmd.site_id, None, usage, fresh)
                continue
            vectors = np.vstack([cached[k.id] if k.id in cached else fresh[k.id] for k in keywords]).astype(np.float32)
            stats = copy.deepcopy(space) if space is not None else SpaceStats(dim=vectors.shape[1])
            stats.add(np.vstack(list(fresh.values())) if fresh else vectors[:0])
            return _Batch(keywords, vectors, fresh, stats, clusters)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _fetch(
        self,
        cmd: StageCommand,
        keywords: list[repo.KeywordRow],
        item_ids: list[int],
        cached: dict[int, Vectors],
        dim: int | None,
        space: SpaceStats | None,
        usage: Usage,
    ) -> dict[int, Vectors]:
        """Embed the batch's keywords that have no vector in the space yet, and with them the site's next
        pending keywords (up to the provider's batch size; more while the space is not calibrated yet, so its
        first calibration sees more of the site), stored so that their own batches find them."""
        to_embed = [k for k in keywords if k.id not in cached]
        if not to_embed:
            return {}
        ahead_size = self._prefetch if space is not None and space.calibrated_count else max(WARM_UP, self._prefetch)
        async with self._sessions() as session:
            ahead = await repo.pending_without_embedding(
                session, cmd.site_id, self._model, dim, exclude=item_ids, limit=ahead_size - len(to_embed)
            )
        texts = to_embed + ahead
        matrix = await self._ai.embed([k.keyword for k in texts], "keyword-embeddings", usage)
        return {k.id: matrix[i] for i, k in enumerate(texts)}

    async def _store_vectors(
        self,
        session: AsyncSession,
        site_id: str,
        dim: int,
        fresh: dict[int, Vectors],
        calibration: Calibration | None,
    ) -> None:
        """Store the fetched vectors and add the ones that newly entered the space to its sum, under the space's
        lock; record a calibration this batch made unless a later one is already stored. Most batches find
        their vectors fetched ahead and calibrate nothing: they leave the space alone (three statements fewer
        in a transaction on the run's critical path)."""
        if not fresh and calibration is None:
            return
        stats = await repo.lock_space(session, site_id, self._model, dim)
        if stats.dim != dim:
            raise RuntimeError(f"site {site_id}: its {self._model} space changed dimension while this batch ran")
        stored = await repo.save_embeddings(session, fresh, self._model)
        if stored:
            stats.add(np.vstack([fresh[i] for i in stored]))
        figures = None
        if calibration is not None and calibration.keywords >= stats.calibrated_count:
            stats.calibrated(calibration)
            figures = calibration.figures()
        await repo.save_space(session, site_id, self._model, stats, figures)

    async def _label(self, keywords: list[str], options: StageOptions, usage: Usage) -> ClusterLabel | AiError:
        try:
            return await self._ai.structured(
                label_system(options), label_prompt(keywords, options), ClusterLabel, "cluster-label", usage
            )
        except AiError as exc:
            return exc

    @staticmethod
    async def _join(session: AsyncSession, members: dict[int, tuple[list[int], Vectors]]) -> dict[int, int]:
        """Add keywords (ids, vectors) to clusters, {cluster id: members}; returns each cluster's size after.
        Three statements for the whole batch, not three per cluster: a stage-1 batch is on the run's critical
        path (they run one after another), and per-cluster round trips were most of its time."""
        if not members:
            return {}
        current = await repo.lock_clusters(session, list(members))  # the query locks them in id order
        added = await repo.assign_keywords_to(session, {c: ids for c, (ids, _) in members.items()})
        changes: dict[int, tuple[Vectors, int]] = {}
        for cluster_id, (_, vectors) in members.items():
            row, n = current[cluster_id], added.get(cluster_id, 0)
            if n:
                # Sizes count members; a cluster rebuilt without vectors (empty centroid) restarts from these.
                old = row.centroid if row.centroid.size == vectors.shape[1] else None
                changes[cluster_id] = (merged_mean(old, row.size if old is not None else 0, vectors), row.size + n)
        await repo.update_clusters(session, changes)
        return {c: int(current[c].size + added.get(c, 0)) for c in members}
