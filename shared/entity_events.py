"""Entity events (issue 15): what the pipeline created, for automation rules and other observers.

Published on `contentline.entities.events`, keyed by site (one site's events stay in order), through the
producer's outbox in the transaction that inserts the entity, so an event exists exactly when its row does
(delivered at least once; consumers drop duplicates by `message_id`).

One envelope, `EntityEvent`, whose `data` is one of the typed payloads below, told apart by `data.type`.
Each payload carries the entity's id and the fields a rule's conditions may test. A breaking change adds a
new `schema_version`; new optional fields are additive and keep version 1.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import Message


class EntityEventType(StrEnum):
    KEYWORD_ADDED = "keyword_added"
    CLUSTER_CREATED = "cluster_created"
    IDEA_CREATED = "idea_created"
    TASK_CREATED = "task_created"
    CONTENT_GENERATED = "content_generated"


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)

    def fields(self) -> dict[str, Any]:
        """What a rule's condition may name (every payload field but the discriminator)."""
        return self.model_dump(mode="json", exclude={"type"})


class KeywordAdded(_Entity):
    type: Literal[EntityEventType.KEYWORD_ADDED] = EntityEventType.KEYWORD_ADDED
    keyword: str
    volume: int | None = None
    difficulty: int | None = None
    source: str = ""


class ClusterCreated(_Entity):
    type: Literal[EntityEventType.CLUSTER_CREATED] = EntityEventType.CLUSTER_CREATED
    name: str
    intent: str
    size: int = Field(ge=0)  # keywords in the cluster when the batch that made it committed


class IdeaCreated(_Entity):
    type: Literal[EntityEventType.IDEA_CREATED] = EntityEventType.IDEA_CREATED
    cluster_id: int
    title: str
    content_type: str
    intent: str
    primary_keyword: str
    target_words: int


class TaskCreated(_Entity):
    type: Literal[EntityEventType.TASK_CREATED] = EntityEventType.TASK_CREATED
    idea_id: int
    title: str


class ContentGenerated(_Entity):
    type: Literal[EntityEventType.CONTENT_GENERATED] = EntityEventType.CONTENT_GENERATED
    task_id: int
    title: str
    word_count: int
    target_words: int
    quality_score: int
    status: Literal["ready", "held"]  # held: the writer's quality gate did not pass it


EntityData = Annotated[
    KeywordAdded | ClusterCreated | IdeaCreated | TaskCreated | ContentGenerated, Field(discriminator="type")
]


class EntityEvent(Message):
    """Something the pipeline created. `run_id` is None for entities made outside a run (an import)."""

    schema_version: Literal[1] = 1
    account_id: str = Field(min_length=1, max_length=64)
    site_id: str = Field(min_length=1, max_length=64)
    run_id: str | None = Field(default=None, max_length=80)
    data: EntityData

    @property
    def event_type(self) -> EntityEventType:
        return EntityEventType(self.data.type)


def entity_event(account_id: str, site_id: str, run_id: str | None, data: EntityData) -> EntityEvent:
    return EntityEvent(account_id=account_id, site_id=site_id, run_id=run_id, data=data)
