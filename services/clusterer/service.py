"""Stage 1 logic: embed a batch of keywords, join them to the site's clusters or form new ones, name new ones.

Existing clusters' centroids are compared with every new keyword, so keywords that arrive in
different batches or runs land in the same cluster. The model is called once per NEW cluster, only to
name, describe and label its intent. Keywords of one site arrive in order on one partition (keyed by
site), so one site's batches never cluster concurrently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.clusterer import repository as repo
from services.clusterer.clustering import Vectors, assign, merged_centroid
from shared import prompts
from shared.ai import AiClient, AiError, Usage
from shared.contracts import ItemFailure, StageCommand, StageOptions
from shared.contracts import Usage as BatchUsage
from shared.entity_events import ClusterCreated, entity_event
from shared.text import normalise
from shared.worker import BatchOutcome

log = logging.getLogger(__name__)

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


class ClustererService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ai: AiClient, embedding_model: str, prefetch: int = 512
    ) -> None:
        self._sessions = sessions
        self._ai = ai
        self._model = embedding_model
        self._prefetch = prefetch

    async def work(self, cmd: StageCommand) -> BatchOutcome:
        usage = Usage()
        async with self._sessions() as session:
            keywords, already_done = await repo.load_keywords(session, cmd.site_id, cmd.item_ids)
            cached = await repo.load_embeddings(session, [k.id for k in keywords], self._model)
            clusters = await repo.load_clusters(session, cmd.site_id)
        outcome = BatchOutcome(skipped=len(already_done), calls=usage.records)
        missing_ids = set(cmd.item_ids) - {k.id for k in keywords} - already_done
        outcome.failures += [ItemFailure(item_id=i, reason="keyword not found for this site") for i in missing_ids]
        if not keywords:
            return outcome

        to_embed = [k for k in keywords if k.id not in cached]
        fresh: dict[int, Vectors] = {}
        if to_embed:
            # One embeddings request serves many batches: the site's next pending keywords ride along
            # (up to the provider's batch size) and are stored, so their own batches find them cached.
            async with self._sessions() as session:
                ahead = await repo.pending_without_embedding(
                    session, cmd.site_id, self._model, exclude=cmd.item_ids, limit=self._prefetch - len(to_embed)
                )
            texts = to_embed + ahead
            try:
                matrix = await self._ai.embed([k.keyword for k in texts], "keyword-embeddings", usage)
            except AiError as exc:
                outcome.failures += [ItemFailure(item_id=k.id, reason=exc.reason) for k in keywords]
                return outcome
            fresh = {k.id: matrix[i] for i, k in enumerate(texts)}
        vectors = np.vstack([cached[k.id] if k.id in cached else fresh[k.id] for k in keywords]).astype(np.float32)
        centroids = (
            np.vstack([c.centroid for c in clusters]).astype(np.float32)
            if clusters
            else np.zeros((0, vectors.shape[1]), np.float32)
        )
        order = sorted(range(len(keywords)), key=lambda i: (-keywords[i].volume, keywords[i].keyword))
        plan = await asyncio.to_thread(
            functools.partial(assign, progress=progress_logger(cmd.site_id)),
            vectors,
            centroids,
            cmd.options.similarity_threshold,
            cmd.options.min_cluster_size,
            order,
        )

        labels = await asyncio.gather(
            *(self._label([keywords[i].keyword for i in group], cmd.options, usage) for group in plan.new_groups)
        )
        new_clusters: list[NewCluster] = []
        for group, label in zip(plan.new_groups, labels, strict=True):
            if isinstance(label, AiError):
                outcome.failures += [ItemFailure(item_id=keywords[i].id, reason=label.reason) for i in group]
                continue
            new_clusters.append(NewCluster(label, [keywords[i].id for i in group], vectors[group]))
        outcome.failures += [
            ItemFailure(
                item_id=keywords[i].id, reason="outlier: no cluster within the similarity threshold", permanent=False
            )
            for i in plan.outliers
        ]
        joins = {
            clusters[idx].id: ([keywords[i].id for i in rows], vectors[rows]) for idx, rows in plan.existing.items()
        }
        processed_ids = [k for ids, _ in joins.values() for k in ids] + [k for c in new_clusters for k in c.keyword_ids]

        async def persist(session: AsyncSession) -> None:
            await repo.save_embeddings(session, fresh, self._model)
            created = 0
            for cluster_id, (ids, vecs) in joins.items():
                await self._join(session, cluster_id, ids, vecs)
            for c in new_clusters:
                name_norm = normalise(c.label.name)
                new_id = await repo.insert_cluster(
                    session,
                    cmd.site_id,
                    cmd.run_id,
                    c.label.name.strip()[:200],
                    name_norm,
                    c.label.description,
                    c.label.intent,
                    merged_centroid(None, 0, c.vectors),
                    0,
                )
                if new_id is None:  # same name as an existing cluster (or one made a moment ago): merge
                    new_id = (await repo.lock_cluster_by_name(session, cmd.site_id, name_norm)).id
                    await self._join(session, new_id, c.keyword_ids, c.vectors)
                    continue
                created += 1
                size = await self._join(session, new_id, c.keyword_ids, c.vectors)
                data = ClusterCreated(id=new_id, name=c.label.name.strip()[:200], intent=c.label.intent, size=size)
                outcome.events.append(entity_event(cmd.account_id, cmd.site_id, cmd.run_id, data))
            outcome.created = created

        outcome.processed = len(processed_ids)
        outcome.persist = persist
        outcome.usage = BatchUsage(
            model_calls=len(usage.records),
            prompt_tokens=sum(r.prompt_tokens for r in usage.records if r.kind == "chat"),
            completion_tokens=sum(r.completion_tokens for r in usage.records),
            embedding_tokens=sum(r.prompt_tokens for r in usage.records if r.kind == "embeddings"),
            keywords_clustered=len(processed_ids),
        )
        return outcome

    async def _label(self, keywords: list[str], options: StageOptions, usage: Usage) -> ClusterLabel | AiError:
        try:
            return await self._ai.structured(
                label_system(options), label_prompt(keywords, options), ClusterLabel, "cluster-label", usage
            )
        except AiError as exc:
            return exc

    @staticmethod
    async def _join(session: AsyncSession, cluster_id: int, keyword_ids: list[int], vectors: Vectors) -> int:
        """Returns the cluster's size after the join."""
        current = await repo.lock_cluster(session, cluster_id)
        added = await repo.assign_keywords(session, cluster_id, keyword_ids)
        if added:
            centroid = merged_centroid(current.centroid, current.size, vectors)
            await repo.update_cluster(session, cluster_id, centroid, current.size + added)
        return int(current.size + added)
