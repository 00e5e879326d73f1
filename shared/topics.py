"""Kafka topic names: the one place they are spelled. Documented in README.md (Topics)."""

from __future__ import annotations

from typing import Final

KEYWORDS_INGEST: Final = "contentline.keywords.ingest"
KEYWORDS_INGEST_DLQ: Final = "contentline.keywords.ingest.dlq"

CLUSTER_COMMANDS: Final = "contentline.stage.cluster.commands"  # stage 1
IDEATE_COMMANDS: Final = "contentline.stage.ideate.commands"  # stage 2
WRITE_COMMANDS: Final = "contentline.stage.write.commands"  # stages 3 and 4
IMAGE_COMMANDS: Final = "contentline.stage.image.commands"  # stages 5 and 6
# The consumer group of the worker that handles each command topic (shared.worker_app: "contentline-<name>").
COMMAND_GROUPS: Final[dict[str, str]] = {
    CLUSTER_COMMANDS: "contentline-clusterer",
    IDEATE_COMMANDS: "contentline-ideator",
    WRITE_COMMANDS: "contentline-writer",
    IMAGE_COMMANDS: "contentline-imager",
}
STAGE_RESULTS: Final = "contentline.stage.results"
COMMANDS_DLQ: Final = "contentline.stage.commands.dlq"
RESULTS_DLQ: Final = "contentline.stage.results.dlq"
RUN_EVENTS: Final = "contentline.run.events"
ARTICLES_PUBLISHED: Final = "contentline.articles.published"  # the review gate's output, for CMS connectors
# Publishing to WordPress (issue 14): the orchestrator's commands in, the publisher's results and remote changes out.
PUBLISH_COMMANDS: Final = "contentline.publish.commands"
PUBLISH_RESULTS: Final = "contentline.publish.results"
PUBLICATION_STATUS: Final = "contentline.publish.status"
PUBLISH_DLQ: Final = "contentline.publish.commands.dlq"
WEBHOOKS_DLQ: Final = "contentline.webhooks.dlq"  # source events the webhooks service cannot read or handle
# Automation (issue 15): what the pipeline created (keyed by site), rule executions, unreadable rule inputs.
ENTITY_EVENTS: Final = "contentline.entities.events"
RULE_EVENTS: Final = "contentline.rules.events"
RULES_DLQ: Final = "contentline.rules.dlq"
PUBLISH_RESULTS_DLQ: Final = "contentline.publish.results.dlq"  # the orchestrator's: results and status events

STAGE_COMMAND_TOPICS: Final[dict[int, str]] = {
    1: CLUSTER_COMMANDS,
    2: IDEATE_COMMANDS,
    3: WRITE_COMMANDS,
    4: WRITE_COMMANDS,
    5: IMAGE_COMMANDS,
    6: IMAGE_COMMANDS,
}

ALL_TOPICS: Final[tuple[str, ...]] = (
    KEYWORDS_INGEST,
    KEYWORDS_INGEST_DLQ,
    CLUSTER_COMMANDS,
    IDEATE_COMMANDS,
    WRITE_COMMANDS,
    IMAGE_COMMANDS,
    STAGE_RESULTS,
    COMMANDS_DLQ,
    RESULTS_DLQ,
    RUN_EVENTS,
    ARTICLES_PUBLISHED,
    PUBLISH_COMMANDS,
    PUBLISH_RESULTS,
    PUBLICATION_STATUS,
    PUBLISH_DLQ,
    WEBHOOKS_DLQ,
    ENTITY_EVENTS,
    RULE_EVENTS,
    RULES_DLQ,
    PUBLISH_RESULTS_DLQ,
)

# Header that carries the reason on every dead-letter record.
DLQ_REASON_HEADER: Final = "x-dead-letter-reason"
DLQ_SOURCE_HEADER: Final = "x-dead-letter-source-topic"
