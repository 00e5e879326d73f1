"""Dead letters: list, show and replay the records parked on the `.dlq` topics.

A replay sends the original bytes with the original key back to the source topic named in the record's
`x-dead-letter-source-topic` header, so the message keeps its `message_id` (idempotent consumers drop
what they already handled) and its partition. It carries `x-replayed-from: <dlq topic>/<partition>/<offset>`.

Replays are remembered on the target topic itself, by that header: before replaying, the target is read
from the oldest selected dead letter's timestamp on (a replay can only be newer than its dead letter) and
a record that was already replayed is skipped unless `force` is given. No table and no second write that
could disagree with what is on the broker; the price is reading the target topic since that time.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.inspection.clients import (
    Clients,
    offsets_at,
    open_clients,
    read_span,
    record_time,
    replay_producer,
    text_headers,
    text_key,
)
from shared.inspection.decoding import (
    DLQ_ENCODING_HEADERS,
    DLQ_ORIGINAL_SHA256_HEADERS,
    DLQ_ORIGINAL_SIZE_HEADERS,
    decode_body,
    decode_contract,
    message_id_of,
)
from shared.inspection.models import (
    DeadLetter,
    DeadLetterFilter,
    RecordNotFoundError,
    RecordRef,
    ReplayItem,
    ReplayMark,
    ReplayReport,
    ReplayStatus,
)
from shared.topics import ALL_TOPICS, DLQ_REASON_HEADER, DLQ_SOURCE_HEADER

REPLAYED_FROM_HEADER = "x-replayed-from"
DLQ_TOPICS: tuple[str, ...] = tuple(t for t in ALL_TOPICS if t.endswith(".dlq"))
# Where a replay may go: our own topics, never a dead-letter topic (the header is data, not a command).
REPLAY_TARGETS: frozenset[str] = frozenset(t for t in ALL_TOPICS if not t.endswith(".dlq"))
# Producers' clocks may differ a little; look for earlier replays from a bit before the dead letter.
CLOCK_SKEW = timedelta(minutes=5)
# Headers about the dead-lettering, not the message: a replay drops them.
_DEAD_LETTER_HEADERS = {
    h.lower()
    for h in (
        DLQ_REASON_HEADER,
        DLQ_SOURCE_HEADER,
        REPLAYED_FROM_HEADER,
        *DLQ_ENCODING_HEADERS,
        *DLQ_ORIGINAL_SIZE_HEADERS,
        *DLQ_ORIGINAL_SHA256_HEADERS,
    )
}


@dataclass(frozen=True)
class _Letter:
    """A dead letter plus what a replay needs: the original bytes, key and message headers."""

    view: DeadLetter
    data: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


def _check_dlq(topic: str) -> None:
    if not topic.endswith(".dlq"):
        raise ValueError(f"topic: {topic!r} is not a dead-letter topic (their names end in .dlq)")


def _why_not_replayable(view: DeadLetter, targets: Collection[str]) -> str | None:
    if view.body.truncated:
        size = view.body.original_size
        of = f" of {size} bytes" if size is not None else ""
        return f"the body is truncated ({view.body.size} bytes{of} kept): the original is gone"
    if view.body.decode_error:
        return f"the body cannot be decoded: {view.body.decode_error}"
    if view.source_topic is None:
        return (
            f"no {DLQ_SOURCE_HEADER} header: an informational copy (e.g. FailedItems, whose items were "
            "reported failed to the orchestrator), not a message to send again"
        )
    if view.source_topic not in targets:
        return f"source topic {view.source_topic!r} is not a topic replays may go to"
    return None


def _about_the_dead_letter(header: str) -> bool:
    """Headers the dead-letter path added (reason, source, size, checksum, truncation, ...): a replay drops them."""
    name = header.lower()
    return name in _DEAD_LETTER_HEADERS or name.startswith("x-dead-letter-")


def _letter(record: Any, body_chars: int, targets: Collection[str]) -> _Letter:
    headers = text_headers(record)
    data, body = decode_body(record.value, headers, body_chars)
    source = headers.get(DLQ_SOURCE_HEADER)
    view = DeadLetter(
        ref=RecordRef(topic=record.topic, partition=record.partition, offset=record.offset),
        timestamp=record_time(record),
        key=text_key(record.key),
        reason=headers.get(DLQ_REASON_HEADER),
        source_topic=source,
        message_id=message_id_of(data, headers),
        contract=None if body.truncated else _contract_name(source or record.topic, data),
        headers=headers,
        body=body,
        replayable=True,
    )
    why = _why_not_replayable(view, targets)
    if why is not None:
        view = view.model_copy(update={"replayable": False, "not_replayable_because": why})
    kept = [(name, value or b"") for name, value in (record.headers or ()) if not _about_the_dead_letter(name)]
    return _Letter(view=view, data=data, key=record.key, headers=kept)


def _contract_name(topic: str, data: bytes) -> str | None:
    message = decode_contract(topic, data)
    return None if message is None else type(message).__name__


async def _iter_letters(
    clients: Clients,
    topic: str,
    where: DeadLetterFilter,
    body_chars: int,
    targets: Collection[str],
) -> AsyncIterator[_Letter]:
    """The dead letters of `topic` that match, partition by partition (reads only what the filter allows)."""
    consumer = clients.consumer
    partitions = await clients.partitions(topic)
    if where.partition is not None:
        partitions = [tp for tp in partitions if tp.partition == where.partition]
    if not partitions:
        return
    start = await offsets_at(consumer, partitions, where.since)
    end = await consumer.end_offsets(partitions)
    if where.offset is not None:
        (tp,) = partitions
        start = {tp: max(start[tp], where.offset)}
        end = {tp: min(end[tp], where.offset + 1)}
    async for record in read_span(consumer, start, end):
        letter = _letter(record, body_chars, targets)
        if where.matches(letter.view):
            yield letter


async def _read_letters(
    clients: Clients, topic: str, where: DeadLetterFilter, body_chars: int, targets: Collection[str]
) -> list[_Letter]:
    """Every matching dead letter of `topic`, oldest first."""
    return sorted([x async for x in _iter_letters(clients, topic, where, body_chars, targets)], key=_order)


def _order(letter: _Letter) -> tuple[float, str, int, int]:
    when = letter.view.timestamp.timestamp() if letter.view.timestamp else 0.0
    return when, letter.view.ref.topic, letter.view.ref.partition, letter.view.ref.offset


async def _find_replays(clients: Clients, letters: list[_Letter]) -> dict[str, list[ReplayMark]]:
    """Earlier replays of these dead letters on their source topics, keyed by the dead letter's ref."""
    times: dict[str, list[datetime | None]] = {}
    for letter in letters:
        if letter.view.source_topic is not None:
            times.setdefault(letter.view.source_topic, []).append(letter.view.timestamp)
    marks: dict[str, list[ReplayMark]] = {}
    for source, stamps in sorted(times.items()):
        known = [t for t in stamps if t is not None]
        since = min(known) - CLOCK_SKEW if len(known) == len(stamps) else None  # no timestamp: read it all
        partitions = await clients.partitions(source)
        start = await offsets_at(clients.consumer, partitions, since)
        end = await clients.consumer.end_offsets(partitions)
        async for record in read_span(clients.consumer, start, end):
            origin = next((v for k, v in (record.headers or ()) if k == REPLAYED_FROM_HEADER), None)
            if origin is not None:
                at = RecordRef(topic=record.topic, partition=record.partition, offset=record.offset)
                marks.setdefault(origin.decode("utf-8", "replace"), []).append(
                    ReplayMark(at=at, timestamp=record_time(record))
                )
    return marks


def _with_replays(letter: _Letter, marks: dict[str, list[ReplayMark]]) -> _Letter:
    view = letter.view.model_copy(update={"replays": marks.get(str(letter.view.ref), []), "replays_checked": True})
    return _Letter(view=view, data=letter.data, key=letter.key, headers=letter.headers)


async def list_dead_letters(
    bootstrap: str,
    topic: str | None = None,
    where: DeadLetterFilter | None = None,
    *,
    limit: int = 100,
    body_chars: int = 500,
    check_replays: bool = False,
) -> list[DeadLetter]:
    """Dead letters of `topic` (default: every contentline .dlq topic) that match `where`, oldest first.

    Only the newest `limit` matches are returned. `check_replays` also reads the source topics to fill
    in `replays` (costs a read of each source topic since the oldest dead letter listed).
    """
    if topic is not None:
        _check_dlq(topic)
    where = where or DeadLetterFilter()
    # Only the newest `limit` stay in memory: a dead-letter topic can hold many large bodies.
    newest: list[tuple[tuple[float, str, int, int], _Letter]] = []  # a min-heap on _order (unique per record)
    async with open_clients(bootstrap) as clients:
        for name in [topic] if topic else DLQ_TOPICS:
            async for letter in _iter_letters(clients, name, where, body_chars, REPLAY_TARGETS):
                if len(newest) < limit:
                    heapq.heappush(newest, (_order(letter), letter))
                elif limit > 0:
                    heapq.heappushpop(newest, (_order(letter), letter))
        found = [letter for _, letter in sorted(newest, key=lambda pair: pair[0])]
        if check_replays and found:
            marks = await _find_replays(clients, found)
            found = [_with_replays(letter, marks) for letter in found]
    return [letter.view for letter in found]


async def show_dead_letter(
    bootstrap: str, topic: str, partition: int, offset: int, *, body_chars: int = 20_000, check_replays: bool = True
) -> DeadLetter:
    """One dead letter with a long body and its earlier replays; RecordNotFoundError if there is none."""
    _check_dlq(topic)
    where = DeadLetterFilter(partition=partition, offset=offset)
    async with open_clients(bootstrap) as clients:
        letters = await _read_letters(clients, topic, where, body_chars, REPLAY_TARGETS)
        if not letters:
            raise RecordNotFoundError(f"no record at {topic}/{partition}/{offset}")
        if check_replays:
            letters = [_with_replays(letters[0], await _find_replays(clients, letters))]
    return letters[0].view


async def replay_dead_letters(
    bootstrap: str,
    topic: str,
    where: DeadLetterFilter,
    *,
    dry_run: bool = True,
    force: bool = False,
    allow_all: bool = False,
    targets: Collection[str] = REPLAY_TARGETS,
) -> ReplayReport:
    """Send the matching dead letters of `topic` back to their source topics, oldest first.

    `dry_run` (the default) only reports what would happen. An empty filter (every record) needs
    `allow_all`. A dead letter already replayed is skipped unless `force`; one whose body is truncated
    or that names no (allowed) source topic is reported not replayable.
    """
    _check_dlq(topic)
    if where.is_empty and not allow_all:
        raise ValueError("where: an empty filter selects every dead letter; pass allow_all to replay them all")
    async with open_clients(bootstrap) as clients:
        letters = await _read_letters(clients, topic, where, 200, targets)
        marks = await _find_replays(clients, [x for x in letters if x.view.replayable])
    if where.partition is not None and where.offset is not None and not letters:
        raise RecordNotFoundError(f"no record at {topic}/{where.partition}/{where.offset}")

    plan = [(letter, _decide(letter, marks.get(str(letter.view.ref), []), force)) for letter in letters]
    items: list[ReplayItem] = [decided for _, decided in plan if decided is not None]
    to_send = [letter for letter, decided in plan if decided is None]
    if dry_run:
        items += [_item(x, ReplayStatus.WOULD_REPLAY, _would(x, marks)) for x in to_send]
    elif to_send:
        async with replay_producer(bootstrap) as producer:
            for letter in to_send:
                headers = [*letter.headers, (REPLAYED_FROM_HEADER, str(letter.view.ref).encode())]
                meta = await producer.send_and_wait(
                    letter.view.source_topic, letter.data, key=letter.key, headers=headers
                )
                to = RecordRef(topic=meta.topic, partition=meta.partition, offset=meta.offset)
                items.append(_item(letter, ReplayStatus.REPLAYED, f"sent {letter.view.body.size} bytes to {to}", to))
    order = {str(x.view.ref): i for i, x in enumerate(letters)}
    items.sort(key=lambda item: order[str(item.source)])
    return ReplayReport(dlq_topic=topic, dry_run=dry_run, items=items)


def _item(letter: _Letter, status: ReplayStatus, detail: str, to: RecordRef | None = None) -> ReplayItem:
    view = letter.view
    return ReplayItem(
        source=view.ref,
        target_topic=view.source_topic,
        message_id=view.message_id,
        status=status,
        detail=detail,
        replayed_to=to,
    )


def _decide(letter: _Letter, earlier: list[ReplayMark], force: bool) -> ReplayItem | None:
    """The item for a dead letter that is not sent, or None for one to send."""
    if not letter.view.replayable:
        return _item(letter, ReplayStatus.NOT_REPLAYABLE, letter.view.not_replayable_because or "")
    if earlier and not force:
        detail = f"already replayed to {_marks(earlier)}; force sends it again"
        return _item(letter, ReplayStatus.ALREADY_REPLAYED, detail)
    return None


def _would(letter: _Letter, marks: dict[str, list[ReplayMark]]) -> str:
    earlier = marks.get(str(letter.view.ref), [])
    again = f" (again: already replayed to {_marks(earlier)})" if earlier else ""
    # Still sent (the consumer may have changed), but say it: an unchanged consumer dead-letters it again.
    invalid = "" if letter.view.contract else " (it does not validate as the topic's contract)"
    return f"would send {letter.view.body.size} bytes to {letter.view.source_topic}{again}{invalid}"


def _marks(marks: list[ReplayMark]) -> str:
    return ", ".join(f"{m.at} at {m.timestamp:%Y-%m-%d %H:%M:%S}" if m.timestamp else str(m.at) for m in marks)
