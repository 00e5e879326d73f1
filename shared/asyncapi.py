"""The AsyncAPI description of contentline's topics, for `faststream docs gen shared.asyncapi:app`.

The real handlers take raw records (so they can dead-letter what does not parse); this module declares
each topic once more with its contract model, producer and consumer, so the generated document shows
the payload schemas. `docs/asyncapi.json` is generated from it and a test keeps the two in step.
"""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared import topics as t
from shared.contracts import (
    ArticlePublished,
    KeywordBatchIngested,
    PublicationStatusChanged,
    PublishCommand,
    PublishResult,
    RunEvent,
    StageCommand,
    StageResult,
)
from shared.entity_events import EntityEvent
from shared.rule_events import RuleExecuted

broker = KafkaBroker("kafka:9092", description="contentline event backbone; every message keyed by site id")

CONSUMED = (
    (t.KEYWORDS_INGEST, KeywordBatchIngested, "contentline-orchestrator", "Upstream keyword batches for a site."),
    (t.CLUSTER_COMMANDS, StageCommand, "contentline-clusterer", "Stage 1 batches: keywords → clusters."),
    (t.IDEATE_COMMANDS, StageCommand, "contentline-ideator", "Stage 2 batches: clusters → ideas."),
    (t.WRITE_COMMANDS, StageCommand, "contentline-writer", "Stage 3 (ideas → tasks) and 4 (tasks → drafts)."),
    (t.IMAGE_COMMANDS, StageCommand, "contentline-imager", "Stage 5 (drafts → prompts) and 6 (prompts → images)."),
    (t.STAGE_RESULTS, StageResult, "contentline-orchestrator", "One result per command, success or failure."),
    (t.PUBLISH_COMMANDS, PublishCommand, "contentline-publisher", "One approved draft to publish on its WordPress."),
    (
        t.RUN_EVENTS,
        RunEvent,
        "contentline-webhooks",
        "Run lifecycle: started, stage transitions, paused, cancelled, completed, failed (webhooks notify).",
    ),
    (
        t.ENTITY_EVENTS,
        EntityEvent,
        "contentline-rules",
        "What the pipeline created, keyed by site: keyword_added (orchestrator import), cluster_created "
        "(clusterer), idea_created (ideator), task_created and content_generated (writer); `data.type` tells "
        "them apart and carries the entity's id and the fields rule conditions test.",
    ),
    (
        t.RULE_EVENTS,
        RuleExecuted,
        "contentline-webhooks",
        "One per finished rule execution (executed, skipped with the reason, failed): rule.* webhooks.",
    ),
    (t.PUBLISH_RESULTS, PublishResult, "contentline-orchestrator", "Per publish command: the post, or why not."),
    (t.PUBLICATION_STATUS, PublicationStatusChanged, "contentline-orchestrator", "A post changed on WordPress."),
)
PUBLISHED_ONLY = (
    (t.ARTICLES_PUBLISHED, ArticlePublished, "Published articles (approved, then published through the API)."),
    (t.KEYWORDS_INGEST_DLQ, bytes, "Unusable ingest records as received; reason in header x-dead-letter-reason."),
    (t.COMMANDS_DLQ, bytes, "Unparseable commands (reason header) and copies of results with failed items."),
    (t.RESULTS_DLQ, bytes, "Unparseable stage results as received; reason in header x-dead-letter-reason."),
    (t.PUBLISH_DLQ, bytes, "Unparseable publish commands as received; reason in header x-dead-letter-reason."),
    (t.WEBHOOKS_DLQ, bytes, "Source events the webhooks service could not read or handle; reason in a header."),
    (t.RULES_DLQ, bytes, "Entity events the rules service could not read or handle; reason in a header."),
    (t.PUBLISH_RESULTS_DLQ, bytes, "Unusable publish results and status events; reason in x-dead-letter-reason."),
)


def _declare() -> None:
    for topic, model, group, description in CONSUMED:

        async def handler(body: object) -> None:
            """Documentation stub; the service's real handler validates the raw record itself."""

        # Annotations are strings under `from __future__ import annotations`; give FastStream the class.
        handler.__annotations__ = {"body": model, "return": None}
        # Never started: it only describes the topic. The real subscribers set AckPolicy.NACK_ON_ERROR.
        broker.subscriber(topic, group_id=group, title=f"{topic}:consume", description=description)(handler)
        broker.publisher(topic, schema=model, title=f"{topic}:publish", description=description)
    for topic, payload, description in PUBLISHED_ONLY:
        broker.publisher(topic, schema=payload, title=f"{topic}:publish", description=description)


_declare()
app = FastStream(
    broker,
    specification=AsyncAPI(broker, title="contentline", version="1", description="Keywords in, reviewed drafts out."),
)
