"""What the inspection functions return: plain pydantic models, shared by the REST routes and the CLI."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InspectionError(Exception):
    """Base of the errors an operator can act on; the message says what and why."""


class UnknownTopicError(InspectionError, LookupError):
    """The topic does not exist on the broker (HTTP 404)."""


class RecordNotFoundError(InspectionError, LookupError):
    """No record at that partition/offset (never written, or removed by retention) (HTTP 404)."""


class RecordRef(_Frozen):
    """One record's address: `topic/partition/offset`."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def parse(cls, text: str) -> RecordRef:
        """The inverse of str() (topic names cannot contain '/': Kafka allows [a-zA-Z0-9._-])."""
        topic, partition, offset = text.rsplit("/", 2)
        return cls(topic=topic, partition=int(partition), offset=int(offset))


# ---------------------------------------------------------------- topics
class PartitionOffsets(_Frozen):
    partition: int
    leader: int | None
    beginning: int
    end: int
    # end − beginning: an upper bound of what is readable (compaction and deleted records leave gaps,
    # transaction markers take offsets too).
    messages: int


class TopicSummary(_Frozen):
    name: str
    exists: bool
    partitions: list[PartitionOffsets] = Field(default_factory=list)
    messages: int = 0  # sum over partitions; an upper bound, see PartitionOffsets.messages
    error: str | None = None  # why it could not be described (e.g. it does not exist)


# ---------------------------------------------------------------- consumer lag
class PartitionLag(_Frozen):
    topic: str
    partition: int
    committed: int | None  # None: the group has no committed offset here (yet)
    end: int
    lag: int | None  # end − committed; None without a committed offset (depends on auto.offset.reset)
    member_id: str | None = None  # who holds the partition now; None for a stopped group
    client_id: str | None = None
    host: str | None = None


class GroupMember(_Frozen):
    member_id: str
    client_id: str
    host: str
    partitions: list[str] = Field(default_factory=list)  # "topic/partition"


class GroupLag(_Frozen):
    group: str
    exists: bool
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty (stopped), Dead (unknown), ...
    protocol_type: str
    members: list[GroupMember] = Field(default_factory=list)
    partitions: list[PartitionLag] = Field(default_factory=list)
    total_lag: int = 0  # sum of the known lags


# ---------------------------------------------------------------- dead letters
class BodyView(_Frozen):
    """A dead-letter body as an operator reads it: decoded, measured, pretty-printed and cut."""

    stored_bytes: int  # the record value's size on the dead-letter topic
    encoding: str | None = None  # "gzip" when the dead-letter copy was compressed
    size: int  # bytes after decoding: the original message, or the start of it when truncated
    original_size: int | None = None  # the original's size, when a header records it
    original_sha256: str | None = None
    truncated: bool = False  # only part of the original is here: it cannot be replayed
    sha256_matches: bool | None = None  # None without a checksum header
    is_json: bool = False
    text: str  # pretty JSON, else text, else a bytes literal; cut to the requested length
    text_truncated: bool = False
    decode_error: str | None = None  # e.g. a gzip stream that ends early


class ReplayMark(_Frozen):
    """An earlier replay of a dead letter, found on its original topic by its `x-replayed-from` header."""

    at: RecordRef
    timestamp: datetime | None


class DeadLetter(_Frozen):
    ref: RecordRef
    timestamp: datetime | None
    key: str | None
    reason: str | None  # header x-dead-letter-reason
    source_topic: str | None  # header x-dead-letter-source-topic: where a replay goes
    message_id: str | None  # from the body (or its message_id header): the id idempotent consumers dedupe on
    contract: str | None = None  # the source topic's contract, when the body validates against it
    headers: dict[str, str] = Field(default_factory=dict)
    body: BodyView
    replayable: bool
    not_replayable_because: str | None = None
    replays: list[ReplayMark] = Field(default_factory=list)
    replays_checked: bool = False  # False: `replays` was not looked up (list_dead_letters' check_replays)


class DeadLetterFilter(_Frozen):
    """Selects dead letters. Every given field must match; an empty filter selects everything."""

    partition: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    reason_contains: str | None = None  # case-insensitive substring of the reason header
    source_topic: str | None = None
    key: str | None = None  # the record key (our keys are site ids)
    since: datetime | None = None  # record timestamp >= since
    until: datetime | None = None  # record timestamp < until

    @model_validator(mode="after")
    def _offset_needs_partition(self) -> DeadLetterFilter:
        if self.offset is not None and self.partition is None:
            raise ValueError("offset: needs a partition too (an offset is only unique within its partition)")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: needs a timezone (e.g. 2026-12-01T10:00:00Z)")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since: must be before until")
        return self

    @property
    def is_empty(self) -> bool:
        return all(value is None for value in self.model_dump().values())

    def matches(self, letter: DeadLetter) -> bool:
        if self.partition is not None and letter.ref.partition != self.partition:
            return False
        if self.offset is not None and letter.ref.offset != self.offset:
            return False
        if self.reason_contains and self.reason_contains.casefold() not in (letter.reason or "").casefold():
            return False
        if self.source_topic is not None and letter.source_topic != self.source_topic:
            return False
        if self.key is not None and letter.key != self.key:
            return False
        if self.since is not None and (letter.timestamp is None or letter.timestamp < self.since):
            return False
        return not (self.until is not None and (letter.timestamp is None or letter.timestamp >= self.until))


class ReplayStatus(StrEnum):
    WOULD_REPLAY = "would_replay"  # dry run
    REPLAYED = "replayed"
    ALREADY_REPLAYED = "already_replayed"  # skipped: an earlier replay is on the original topic (force to resend)
    NOT_REPLAYABLE = "not_replayable"  # truncated body, no or unknown source topic


class ReplayItem(_Frozen):
    source: RecordRef
    target_topic: str | None
    message_id: str | None
    status: ReplayStatus
    detail: str
    replayed_to: RecordRef | None = None


class ReplayReport(_Frozen):
    dlq_topic: str
    dry_run: bool
    items: list[ReplayItem] = Field(default_factory=list)

    def count(self, status: ReplayStatus) -> int:
        return sum(1 for item in self.items if item.status is status)


# ---------------------------------------------------------------- tail
class TailLine(_Frozen):
    ref: RecordRef
    timestamp: datetime | None
    key: str | None
    contract: str | None  # the pydantic model the value decoded as; None → `summary` is the raw value
    summary: str  # one readable line
    data: Any = None  # the decoded JSON value, when it parsed
    headers: dict[str, str] = Field(default_factory=dict)

    def render(self) -> str:
        when = self.timestamp.strftime("%H:%M:%S.%f")[:-3] if self.timestamp else "--:--:--"
        key = f" key={self.key}" if self.key else ""
        return f"{when} {self.ref.topic}[{self.ref.partition}]@{self.ref.offset}{key} {self.summary}"
