"""Operator API (/ops/*): parked outbox rows and their retry; topics, consumer lag, dead letters (list, show,
replay with a dry run first) and a tail of any topic, decoded with our contracts (docs/operators.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.orchestrator.ops.inspection import CURSOR_PATTERN, Inspector, TailPage, filter_of, parse_cursor
from services.orchestrator.ops.service import OpsService, ParkedRow
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import INT64_MAX, Limit, OutboxRowId, SafeLine
from shared.inspection import DeadLetter, GroupLag, ReplayReport, TopicSummary

TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"  # Kafka's own rule for topic names
TopicPath = Annotated[str, Path(pattern=TOPIC_PATTERN, description="A topic name")]
TopicQuery = Annotated[str | None, Query(pattern=TOPIC_PATTERN)]
PartitionNo = Annotated[int, Field(ge=0, le=2**31 - 1)]
OffsetNo = Annotated[int, Field(ge=0, le=INT64_MAX)]
Filter = Annotated[SafeLine | None, Query(max_length=500)]
BodyChars = Annotated[int, Query(ge=0, le=1_000_000, description="cut readable bodies to this many characters")]
UNAVAILABLE = responses(503)  # the broker did not answer


class ReplayIn(BaseModel):
    """Which dead letters to send back (every given field must match), and whether to really send them."""

    model_config = ConfigDict(extra="forbid")
    partition: PartitionNo | None = None
    offset: OffsetNo | None = Field(default=None, description="with partition: one record")
    reason_contains: Annotated[SafeLine | None, Field(max_length=500)] = None
    source_topic: Annotated[str | None, Field(pattern=TOPIC_PATTERN)] = None
    key: Annotated[SafeLine | None, Field(max_length=500)] = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    all: bool = Field(default=False, description="required to select every record (no filter at all)")
    dry_run: bool = Field(default=True, description="only report what would be sent (the default)")
    force: bool = Field(default=False, description="send again what was replayed before")


def build(ops: OpsService, inspector: Inspector) -> list[APIRouter]:
    api = KindRouter(RouteKind.OPERATOR, tags=["operations (operator)"])

    @api.get("/ops/outbox/parked")
    async def parked_outbox(limit: Limit = 100) -> list[ParkedRow]:
        """Messages the broker refused for good, with the reason, oldest first."""
        return await ops.parked(limit)

    @api.post("/ops/outbox/{row_id}/retry", responses=responses(409))
    async def retry_outbox(row_id: OutboxRowId) -> ParkedRow:
        """Hand a parked row back to its producer's relay (after fixing the cause)."""
        return await ops.retry(row_id)

    @api.get("/ops/topics", responses=UNAVAILABLE)
    async def topics() -> list[TopicSummary]:
        """Every contentline topic: partitions, leader, beginning/end offsets and message counts (end − beginning,
        an upper bound)."""
        return await inspector.topics()

    @api.get("/ops/topics/{topic}", responses=UNAVAILABLE)
    async def topic(topic: TopicPath) -> TopicSummary:
        return await inspector.topic(topic)

    @api.get("/ops/topics/{topic}/tail", responses=UNAVAILABLE)
    async def tail(
        topic: TopicPath,
        cursor: Annotated[str | None, Query(max_length=30_000, pattern=CURSOR_PATTERN,
                                            description="from a previous answer: read on from there")] = None,
        last: Annotated[int, Query(ge=0, le=1000, description="without a cursor: the last N of each partition")] = 10,
        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many lines")] = 200,
        follow: Annotated[bool, Query(description="nothing new: wait up to `wait` seconds for it")] = False,
        wait: Annotated[float, Query(ge=0, le=30)] = 10.0,
    ) -> TailPage:
        """Records of a topic decoded with our contracts, one readable line each (like kcat), plus a cursor.
        Follow a topic by asking again with the cursor and `follow=true`."""
        return await inspector.tail(
            topic, cursor=parse_cursor(cursor), last=last, limit=limit, follow=follow, wait=wait
        )

    @api.get("/ops/lag", responses=UNAVAILABLE)
    async def lag(
        group: Annotated[list[Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]] | None,
                         Query(max_length=50, description="only these consumer groups (repeatable)")] = None,
        topic: Annotated[list[Annotated[str, Field(pattern=TOPIC_PATTERN)]] | None,
                         Query(max_length=50, description="only these topics (repeatable)")] = None,
    ) -> list[GroupLag]:
        """Per consumer group, topic and partition: committed offset, end offset, lag and the member holding it.
        Exact for a stopped group too; a group the broker does not know comes back with exists=false."""
        return await inspector.lag(group, topic)

    @api.get("/ops/dlq", responses=UNAVAILABLE)
    async def dead_letters(
        topic: Annotated[TopicQuery, Query(description="a .dlq topic (default: all of them)")] = None,
        partition: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
        offset: Annotated[int | None, Query(ge=0, le=INT64_MAX, description="with partition")] = None,
        reason_contains: Annotated[Filter, Query(description="the reason contains this (any case)")] = None,
        source_topic: TopicQuery = None,
        key: Filter = None,
        since: Annotated[AwareDatetime | None, Query(description="record time >= since")] = None,
        until: Annotated[AwareDatetime | None, Query(description="record time < until")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="the newest N matches")] = 100,
        body_chars: BodyChars = 500,
        check_replays: Annotated[bool, Query(description="also find earlier replays (reads source topics)")] = False,
    ) -> list[DeadLetter]:
        """Dead letters with their reason, source topic, key, message id and a readable body, oldest first."""
        where = filter_of(
            "query", partition=partition, offset=offset, reason_contains=reason_contains, source_topic=source_topic,
            key=key, since=since, until=until,
        )  # fmt: skip
        return await inspector.dead_letters(topic, where, limit, body_chars, check_replays)

    @api.get("/ops/dlq/{topic}/{partition}/{offset}", responses=UNAVAILABLE)
    async def dead_letter(
        topic: TopicPath,
        partition: Annotated[int, Path(ge=0, le=2**31 - 1)],
        offset: Annotated[int, Path(ge=0, le=INT64_MAX)],
        body_chars: BodyChars = 20_000,
    ) -> DeadLetter:
        """One dead letter with a long body and where it was replayed to before."""
        return await inspector.dead_letter(topic, partition, offset, body_chars)

    @api.post("/ops/dlq/{topic}/replay", responses=UNAVAILABLE)
    async def replay(topic: TopicPath, body: ReplayIn) -> ReplayReport:
        """Send matching dead letters back to their source topic with their original bytes and key (so their
        message id: idempotent consumers drop what they already handled). A dry run unless `dry_run` is false;
        every record needs `all`; one replayed before is skipped unless `force`."""
        where = filter_of(
            "body", partition=body.partition, offset=body.offset, reason_contains=body.reason_contains,
            source_topic=body.source_topic, key=body.key, since=body.since, until=body.until,
        )  # fmt: skip
        if where.is_empty and not body.all:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "all"), "msg": (
                "no filter selects every dead letter: give a filter, or set all to true to replay them all")}])
        return await inspector.replay(topic, where, dry_run=body.dry_run, force=body.force, allow_all=body.all)

    return [api]
