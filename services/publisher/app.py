"""Publisher process: `python -m services.publisher`. Needs no WordPress to start: each command names its site,
whose connection is read from the database when the command comes."""

from __future__ import annotations

from faststream import AckPolicy, FastStream

from services.publisher.handlers import make_handler
from services.publisher.service import PublisherService
from services.publisher.sync import StatusSync
from shared.kafka import RELAXED_CONSUMER_TUNING
from shared.runtime import Runtime
from shared.topics import PUBLISH_COMMANDS

# A command is minutes of remote calls at worst (uploads, retries with back-off): well inside this.
MAX_POLL_INTERVAL_MS = 30 * 60 * 1000


def create_app() -> FastStream:
    rt = Runtime.create("publisher")
    service = PublisherService(rt.sessions, rt.outbox, rt.settings, worker=rt.name)
    sync = StatusSync(rt.sessions, rt.outbox, rt.settings, service.client)
    rt.broker.subscriber(
        PUBLISH_COMMANDS,
        group_id=f"contentline-{rt.name}",
        # Commit after the handler (at-least-once); a deferred publish nacks, so the record comes back.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        max_poll_records=1,  # each record is minutes of remote calls at worst
        title=f"{rt.name}:{PUBLISH_COMMANDS}",
        **RELAXED_CONSUMER_TUNING,
    )(make_handler(rt, service))
    return FastStream(
        rt.broker,
        on_startup=[rt.on_startup],
        after_startup=[rt.after_startup, sync.start],
        on_shutdown=[sync.stop, rt.on_shutdown],
    )
