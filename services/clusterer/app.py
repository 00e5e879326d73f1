"""Clusterer process: `python -m services.clusterer`."""

from __future__ import annotations

from faststream import FastStream

from services.clusterer.handlers import make_handler
from services.clusterer.service import ClustererService
from shared.runtime import Runtime
from shared.topics import CLUSTER_COMMANDS
from shared.worker_app import worker_app


def create_app() -> FastStream:
    rt = Runtime.create("clusterer", pre_ping=False)
    service = ClustererService(
        rt.sessions, rt.ai, rt.settings.embedding_model, prefetch=rt.settings.embedding_batch_size
    )
    # One site's batches merge into the same clusters: they run one after another (stage 1 is keyed by site),
    # in passes that take along the batches loaded behind them; it holds a run's whole stage-1 window.
    handler = make_handler(rt, service)
    return worker_app(rt, CLUSTER_COMMANDS, handler, key_ordered=True, holds=rt.settings.clustering_window)
