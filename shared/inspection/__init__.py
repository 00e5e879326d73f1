"""Operator inspection of contentline's Kafka side: topics, consumer lag, dead letters (list, show,
replay) and a decoding tail. Plain async functions over aiokafka's admin client and consumers, returning
pydantic models, so the operator REST routes and the CLI share them.

    topics = await list_topics(bootstrap)
    groups = await consumer_lag(bootstrap, groups=["orchestrator"])
    letters = await list_dead_letters(bootstrap, KEYWORDS_INGEST_DLQ, DeadLetterFilter(reason_contains="site"))
    report = await replay_dead_letters(bootstrap, KEYWORDS_INGEST_DLQ, DeadLetterFilter(partition=2, offset=7),
                                       dry_run=False)
    async with contextlib.aclosing(tail_topic(bootstrap, RUN_EVENTS, last=10)) as lines:
        async for line in lines:
            print(line.render())
"""

from shared.inspection.deadletters import (
    DLQ_TOPICS,
    REPLAY_TARGETS,
    REPLAYED_FROM_HEADER,
    list_dead_letters,
    replay_dead_letters,
    show_dead_letter,
)
from shared.inspection.decoding import (
    DLQ_ENCODING_HEADERS,
    DLQ_ORIGINAL_SHA256_HEADERS,
    DLQ_ORIGINAL_SIZE_HEADERS,
    TOPIC_CONTRACTS,
)
from shared.inspection.lag import consumer_lag
from shared.inspection.models import (
    BodyView,
    DeadLetter,
    DeadLetterFilter,
    GroupLag,
    GroupMember,
    InspectionError,
    PartitionLag,
    PartitionOffsets,
    RecordNotFoundError,
    RecordRef,
    ReplayItem,
    ReplayMark,
    ReplayReport,
    ReplayStatus,
    TailLine,
    TopicSummary,
    UnknownTopicError,
)
from shared.inspection.tail import decode_line, tail_topic
from shared.inspection.topics import list_topics

__all__ = [
    "DLQ_ENCODING_HEADERS",
    "DLQ_ORIGINAL_SHA256_HEADERS",
    "DLQ_ORIGINAL_SIZE_HEADERS",
    "DLQ_TOPICS",
    "REPLAYED_FROM_HEADER",
    "REPLAY_TARGETS",
    "TOPIC_CONTRACTS",
    "BodyView",
    "DeadLetter",
    "DeadLetterFilter",
    "GroupLag",
    "GroupMember",
    "InspectionError",
    "PartitionLag",
    "PartitionOffsets",
    "RecordNotFoundError",
    "RecordRef",
    "ReplayItem",
    "ReplayMark",
    "ReplayReport",
    "ReplayStatus",
    "TailLine",
    "TopicSummary",
    "UnknownTopicError",
    "consumer_lag",
    "decode_line",
    "list_dead_letters",
    "list_topics",
    "replay_dead_letters",
    "show_dead_letter",
    "tail_topic",
]
