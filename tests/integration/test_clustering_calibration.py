"""Stage 1 at default settings through the real services (issue 10): the clusterer calibrates its threshold
from the site's own keywords and keeps the site's space (mean, threshold) in `clustering_spaces`; the site
setting overrides it; a change of embedding model (and of its dimension) re-embeds the site's clustered
keywords instead of comparing vectors of two models."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.db.models import Cluster, ClusteringSpace, Keyword, KeywordEmbedding
from shared.settings import Settings
from tests.helpers import (
    CLUSTERING_ONLY,
    TOPICS,
    configure,
    create_site,
    import_keywords,
    keyword_set,
    stage,
    start_run,
    wait_run,
)

OTHER_MODEL = "other-embedder"


async def clusters_by_topic(db: async_sessionmaker[AsyncSession], site: str) -> dict[str, Counter[int | None]]:
    """Per topic head (tests.helpers.TOPICS), how many of its keywords sit in each cluster."""
    async with db() as s:
        rows = (await s.execute(select(Keyword.keyword, Keyword.cluster_id).where(Keyword.site_id == site))).all()
    out: dict[str, Counter[int | None]] = {}
    for keyword, cluster_id in rows:
        head = next(h for h, _ in TOPICS if keyword.startswith(h))
        out.setdefault(head, Counter())[cluster_id] += 1
    return out


async def space_of(db: async_sessionmaker[AsyncSession], site: str, model: str) -> ClusteringSpace | None:
    async with db() as s:
        return await s.get(ClusteringSpace, (site, model))


async def test_default_settings_calibrate_from_the_site_and_the_setting_overrides(
    api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    model = Settings().embedding_model
    site = create_site(api)
    import_keywords(api, site, keyword_set(6, 8))
    configure(api, site, batch_sizes={"1": 10}, stage_enabled=CLUSTERING_ONLY)
    run = wait_run(api, start_run(api, site)["run_id"])
    assert stage(run, 1)["items_processed"] == 48

    space = await space_of(db, site, model)
    assert space is not None and space.dim == 256 and space.keyword_count == 48
    # the first batch fetched the whole list ahead (warm-up) and calibrated on all of it
    assert space.calibrated_count == 48 and space.threshold is not None
    assert space.calibration["keywords"] == 48 and 0 < space.calibration["f_score"] <= 1
    by_topic = await clusters_by_topic(db, site)
    # each topic in a cluster of its own, give or take a keyword the lexical fake embedder places by a shared
    # word ("indoor plants best" beside "best running shoes ...")
    main = {head: c.most_common(1)[0] for head, c in by_topic.items()}
    assert all(n >= 6 for _, n in main.values()) and len({cid for cid, _ in main.values()}) == 6, by_topic
    async with db() as s:
        models = (await s.scalars(select(Cluster.embedding_model).where(Cluster.site_id == site))).all()
    assert set(models) == {model}

    # The site setting is a raw-cosine override: at 0.99 no keyword joins another (their cosines are lower).
    head, mods = TOPICS[0]
    import_keywords(api, site, [{"keyword": f"{head} {m} {extra}"} for m in mods[:2] for extra in ("uk", "usa")])
    configure(api, site, options={"similarity_threshold": 0.99})
    run = wait_run(api, start_run(api, site)["run_id"])
    assert stage(run, 1)["items_processed"] == 4
    after = await clusters_by_topic(db, site)
    assert after[head][main[head][0]] == by_topic[head][main[head][0]]  # none joined its topic's cluster
    assert sorted(after[head].values()) == sorted([1, 1, 1, 1, *by_topic[head].values()])
    space = await space_of(db, site, model)
    assert space is not None and space.keyword_count == 52 and space.calibrated_count == 48


@pytest.fixture
def restore_embedder(stack: Stack, fake: httpx.Client) -> Iterator[None]:
    yield
    stack.extra_env.pop("CONTENTLINE_EMBEDDING_MODEL", None)
    assert fake.post("/config", json={"native_dimensions": None}).status_code == 200
    stack.stop_service("clusterer")
    stack.start_service("clusterer")


async def test_a_new_embedding_model_re_embeds_the_site_instead_of_mixing_spaces(
    stack: Stack, api: httpx.Client, fake: httpx.Client, db: async_sessionmaker[AsyncSession], restore_embedder: None
) -> None:
    model = Settings().embedding_model
    site = create_site(api)
    import_keywords(api, site, keyword_set(4, 6))
    configure(api, site, batch_sizes={"1": 8}, stage_enabled=CLUSTERING_ONLY)
    wait_run(api, start_run(api, site)["run_id"])
    before = await clusters_by_topic(db, site)
    assert all(len(c) == 1 for c in before.values()) and len({next(iter(c)) for c in before.values()}) == 4, before

    # Another model, with another vector size: the clusterer restarts with it.
    stack.stop_service("clusterer")
    stack.extra_env["CONTENTLINE_EMBEDDING_MODEL"] = OTHER_MODEL
    assert fake.post("/config", json={"native_dimensions": 128}).status_code == 200
    stack.start_service("clusterer")

    import_keywords(api, site, [{"keyword": f"{head} {mods[6]}"} for head, mods in TOPICS[:4]])
    run = wait_run(api, start_run(api, site)["run_id"])
    assert stage(run, 1)["items_processed"] == 4 and stage(run, 1)["items_created"] == 0
    after = await clusters_by_topic(db, site)
    # each new keyword joined its topic's existing cluster
    assert {h: set(c) for h, c in after.items()} == {h: set(c) for h, c in before.items()}
    assert sum(sum(c.values()) for c in after.values()) == 28

    async with db() as s:
        stored = (
            await s.execute(
                select(KeywordEmbedding.model, KeywordEmbedding.dim)
                .join(Keyword, Keyword.id == KeywordEmbedding.keyword_id)
                .where(Keyword.site_id == site)
            )
        ).all()
        cluster_models = (await s.scalars(select(Cluster.embedding_model).where(Cluster.site_id == site))).all()
        sizes = (await s.scalars(select(Cluster.size).where(Cluster.site_id == site))).all()
    assert Counter(map(tuple, stored)) == {(OTHER_MODEL, 128): 28}  # no vector of the old model is left
    assert set(cluster_models) == {OTHER_MODEL} and sorted(sizes) == [7, 7, 7, 7]
    space = await space_of(db, site, OTHER_MODEL)
    assert space is not None and space.dim == 128 and space.keyword_count == 28 and space.threshold is not None
    old = await space_of(db, site, model)
    assert old is not None and old.dim == 256  # left as it was: a switch back rebuilds from the stored vectors
