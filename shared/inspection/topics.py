"""Topic listing: partitions, beginning/end offsets and message counts of contentline's topics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import for_code

from shared.inspection.clients import admin_client, manual_consumer, offset_bounds
from shared.inspection.models import PartitionOffsets, TopicSummary
from shared.topics import ALL_TOPICS

TOPIC_PREFIX = "contentline."


async def list_topics(bootstrap: str, names: Sequence[str] | None = None) -> list[TopicSummary]:
    """Each topic with its partitions, offsets and message count (end − beginning: an upper bound).

    `names` None: every topic of shared/topics.py (missing ones reported with exists=False) and any other
    existing `contentline.` topic, in that order.
    """
    async with admin_client(bootstrap) as admin:
        existing = set(await admin.list_topics())
        if names is None:
            extra = sorted(t for t in existing if t.startswith(TOPIC_PREFIX) and t not in ALL_TOPICS)
            names = [*ALL_TOPICS, *extra]
        present = [t for t in names if t in existing]
        # describe_topics([]) would describe every topic: only ask when there is something to ask.
        described: dict[str, Any] = {d["topic"]: d for d in await admin.describe_topics(present)} if present else {}

    partitions = [
        TopicPartition(topic, p["partition"])
        for topic in present
        if not described[topic]["error_code"]
        for p in described[topic]["partitions"]
    ]
    beginning: dict[TopicPartition, int] = {}
    end: dict[TopicPartition, int] = {}
    if partitions:
        async with manual_consumer(bootstrap) as consumer:
            beginning, end = await offset_bounds(consumer, partitions)

    out: list[TopicSummary] = []
    for topic in names:
        info = described.get(topic)
        if info is None:
            out.append(TopicSummary(name=topic, exists=False, error="topic does not exist"))
            continue
        if info["error_code"]:
            error = for_code(info["error_code"]).__name__
            out.append(TopicSummary(name=topic, exists=True, error=f"cannot describe: {error}"))
            continue
        rows = []
        for p in sorted(info["partitions"], key=lambda p: int(p["partition"])):
            tp = TopicPartition(topic, p["partition"])
            leader = p["leader"] if p["leader"] >= 0 else None
            rows.append(
                PartitionOffsets(
                    partition=tp.partition,
                    leader=leader,
                    beginning=beginning[tp],
                    end=end[tp],
                    messages=end[tp] - beginning[tp],
                )
            )
        out.append(TopicSummary(name=topic, exists=True, partitions=rows, messages=sum(r.messages for r in rows)))
    return out
