"""Wiring of a stage worker process: one consumer group on one command topic, several commands at once.

The subscriber hands every record to an OrderedCommitPool (shared.parallel): up to the worker's model
concurrency of commands are worked at once, also when they share a partition, and offsets are committed
only for finished work, in order. See README "Delivery guarantees".
"""

from __future__ import annotations

from faststream import AckPolicy, FastStream
from faststream.kafka.annotations import KafkaMessage

from shared import metrics
from shared.kafka import CONSUMER_TUNING
from shared.metrics.families import COMMANDS_IN_FLIGHT
from shared.parallel import Handler, OrderedCommitPool
from shared.runtime import Runtime

# The pool waits this long on a rebalance for in-flight commands before it cancels them (they are then
# redelivered to the partition's next owner); the group waits a little longer for this member to rejoin.
REVOKE_WAIT_SECONDS = 45.0
REBALANCE_TIMEOUT_MS = 60_000


def worker_app(
    rt: Runtime, topic: str, handler: Handler, *, key_ordered: bool = False, holds: int | None = None
) -> FastStream:
    """`key_ordered`: records with the same Kafka key take turns (the clusterer: one site's batches must not
    cluster side by side). The handler waits for its turn itself (`shared.parallel.wait_for_turn`), where its
    ordered part begins; what comes before overlaps the previous record's. `holds`: commands held at once
    (default `Settings.worker_commands_in_flight`)."""
    pool = OrderedCommitPool(
        metrics.timed(topic, handler),  # FastStream's duration metric sees only the hand-off to the pool
        name=rt.name,
        max_in_flight=holds or rt.settings.worker_commands_in_flight,
        key_ordered=key_ordered,
        handler_waits=key_ordered,
        retry_seconds=0.1,  # the handler has already backed off (shared.consume.bounded) before it raises
        revoke_seconds=REVOKE_WAIT_SECONDS,
    )

    COMMANDS_IN_FLIGHT.labels(topic=topic).set_function(lambda: pool.in_flight)

    async def on_record(msg: KafkaMessage) -> None:
        await pool.submit(msg)

    rt.broker.subscriber(
        topic,
        group_id=f"contentline-{rt.name}",
        # FastStream commits nothing; the pool commits each partition up to its first unfinished record.
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        listener=pool.listener,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        title=f"{rt.name}:{topic}",
        **CONSUMER_TUNING,
    )(on_record)
    return FastStream(
        rt.broker,
        on_startup=[rt.ai.open_clients, rt.on_startup],
        after_startup=[rt.after_startup],
        # In-flight commands finish and are committed before the relay, the AI client and the DB close.
        on_shutdown=[pool.drain, rt.on_shutdown],
    )
