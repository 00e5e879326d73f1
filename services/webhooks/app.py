"""Webhooks process: `python -m services.webhooks`.

One consumer group over the source topics (services.webhooks.sources) that only writes delivery rows, and the
dispatcher task that sends them; any number of replicas.
"""

from __future__ import annotations

import logging

from faststream import AckPolicy, FastStream

from services.webhooks import crypto
from services.webhooks.dispatcher import Dispatcher
from services.webhooks.handlers import make_handler
from services.webhooks.service import WebhookService
from services.webhooks.sources import SOURCES
from shared.kafka import RELAXED_CONSUMER_TUNING
from shared.runtime import Runtime

GROUP = "contentline-webhooks"
log = logging.getLogger("webhooks")


def create_app() -> FastStream:
    rt = Runtime.create("webhooks")
    dispatcher = Dispatcher(rt.sessions, rt.settings)
    service = WebhookService(rt.sessions, rt.settings, on_enqueued=dispatcher.wake)
    for source in SOURCES:
        rt.broker.subscriber(
            source.topic,
            group_id=GROUP,
            # Commit after the handler (at-least-once); an infrastructure failure nacks and is redelivered
            # after the handler's back-off. The handler only writes rows: it is short.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            max_poll_interval_ms=5 * 60 * 1000,
            title=f"webhooks:{source.topic}",
            **RELAXED_CONSUMER_TUNING,
        )(make_handler(rt, service, source))

    async def check_secret_key() -> None:
        try:
            crypto.check_key(rt.settings.secret_key)
        except crypto.SecretKeyError as exc:  # events are still queued; sending waits for a key
            log.error("%s; deliveries cannot be signed until it is", exc)

    async def start_dispatcher() -> None:
        dispatcher.start()

    return FastStream(
        rt.broker,
        on_startup=[rt.on_startup, check_secret_key],
        after_startup=[rt.after_startup, start_dispatcher],
        on_shutdown=[dispatcher.stop, rt.on_shutdown],
    )
