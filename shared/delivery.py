"""Inbox (idempotent consume) and outbox (no dual writes), both inside the caller's transaction.

No Kafka imports here: the relay that moves outbox rows to Kafka lives in `shared.kafka`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import Message, Stage, StageCommand
from shared.db.models import DeliveryAttempt, InboxMessage, OutboxMessage
from shared.db.session import autocommit
from shared.partitioning import spread_key
from shared.topics import ENTITY_EVENTS, RUN_EVENTS

# Topics whose rows a service relays through a lane of their own (producer "<service>.<lane>", its own relay):
# the events people and automation read (entity events, run progress), apart from a run's own commands and
# results. An import adds one entity event per keyword, and a run started right after it waited behind 1,500 of
# them (0.2-0.4 s before its first commands went out); every result adds a progress event that rode in the same
# relay rounds as the commands it released (issue 13). Each lane keeps its rows in id order, so a topic's records
# (and a site's, by key) keep their order; records of different topics never had one on Kafka.
LANES: Mapping[str, str] = {ENTITY_EVENTS: "events", RUN_EVENTS: "events"}


def lane_producers(producer: str, lanes: Mapping[str, str] = LANES) -> list[str]:
    """The producer names a service's outbox writes under: its own first, then one per lane."""
    return [producer, *(f"{producer}.{lane}" for lane in sorted(set(lanes.values())))]


def command_key(command: StageCommand) -> str:
    """The Kafka key a stage command is published with.

    Stage 1 stays keyed by site: the clusterer merges each batch into the site's clusters, so one site's
    batches must be clustered one at a time (they share a partition, and the clusterer's pool runs one key's
    records in order). Every other stage's batches are independent (the barrier lives in the orchestrator),
    so they go round the partitions by batch sequence (`shared.partitioning`: evenly over worker replicas),
    each key unique by command id. A command asked again keeps its sequence and id, so it lands on the
    partition of its first delivery.
    """
    if command.stage is Stage.CLUSTER:
        return command.site_id
    return spread_key(command.batch_seq, command.message_id)


@dataclass(frozen=True)
class Processed:
    """An inbox row: the message was handled; `result` is what was answered (None if nothing was kept)."""

    result: dict[str, Any] | None


async def processed(session: AsyncSession, consumer: str, message_id: str) -> Processed | None:
    """The inbox row of a message already handled by `consumer`, or None."""
    row = (
        await session.execute(
            select(InboxMessage.result).where(InboxMessage.consumer == consumer, InboxMessage.message_id == message_id)
        )
    ).first()
    return None if row is None else Processed(row[0])


def _one_more(stmt: Insert) -> Insert:
    """An insert of attempt counts that counts one more start: a new row keeps the 1 it brings, an existing
    row goes up by one (every statement that counts an attempt)."""
    return stmt.on_conflict_do_update(
        index_elements=[DeliveryAttempt.consumer, DeliveryAttempt.message_id],
        set_={"attempts": DeliveryAttempt.attempts + 1, "updated_at": func.now()},
    )


# The hot path's statements are built once, with bound parameters: SQLAlchemy then computes each one's cache key
# once, not at every execution (issue 13: a worker runs them for every command).
_CONSUMER = bindparam("of_consumer", type_=String)
_MESSAGE = bindparam("of_message", type_=String)
_SEEN = (
    select(InboxMessage.result)
    .where(InboxMessage.consumer == _CONSUMER, InboxMessage.message_id == _MESSAGE)
    .cte("seen")
)
_COUNTED = (
    _one_more(insert(DeliveryAttempt))
    .from_select(
        ["consumer", "message_id", "attempts"], select(_CONSUMER, _MESSAGE, literal(1)).where(~exists(_SEEN.select()))
    )
    .returning(DeliveryAttempt.attempts, DeliveryAttempt.last_error)
    .cte("counted")
)
_START_OR_RECALL = select(
    exists(_SEEN.select()),
    select(_SEEN.c.result).scalar_subquery(),
    select(_COUNTED.c.attempts).scalar_subquery(),
    select(_COUNTED.c.last_error).scalar_subquery(),
)
_GONE = (
    delete(DeliveryAttempt)
    .where(DeliveryAttempt.consumer == _CONSUMER, DeliveryAttempt.message_id == _MESSAGE)
    .returning(DeliveryAttempt.message_id)
    .cte("gone")
)


async def start_or_recall(session: AsyncSession, consumer: str, message_id: str) -> Processed | tuple[int, str | None]:
    """`processed`, then `begin_attempt` only if it was not: one statement, atomic on its own (so it may run
    outside a transaction). The inbox row of a message handled before, else the attempt count taken now as
    (attempts, last error)."""
    handled, result, attempts, last_error = (
        await session.execute(_START_OR_RECALL, {"of_consumer": consumer, "of_message": message_id})
    ).one()
    return Processed(result) if handled else (int(attempts), last_error)


# On the table, not the ORM entity: the ORM's bulk-insert path returns no rows for an insert with a CTE.
_INBOX = cast(Table, InboxMessage.__table__)
_CLAIM_SETTLED = (
    insert(_INBOX)
    .values(consumer=_CONSUMER, message_id=_MESSAGE, result=bindparam("answer", type_=_INBOX.c.result.type))
    .on_conflict_do_nothing()
    .returning(_INBOX.c.message_id)
    .add_cte(_GONE)
)


async def claim_settled(session: AsyncSession, consumer: str, message_id: str, result: dict[str, Any]) -> bool:
    """`claim_inbox` with the answer stored and the attempt count forgotten (`drop_attempts`), in one statement
    at the end of the caller's transaction; False when another delivery recorded the message first: roll back
    (the count comes back with it). A concurrent duplicate's writes block on the first one's uncommitted rows
    (the workers' inserts skip conflicts) and its claim then conflicts: one transaction per message commits."""
    params = {"of_consumer": consumer, "of_message": message_id, "answer": result}
    return (await session.scalar(_CLAIM_SETTLED, params)) is not None


@dataclass
class Exclusive:
    """One holder per message id in this process: a duplicate that arrives while the first delivery is still
    being worked waits for it, then finds it in the inbox (the work never runs twice side by side here)."""

    _locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, message_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(message_id, (asyncio.Lock(), 0))
        self._locks[message_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[message_id]
            if users <= 1:
                del self._locks[message_id]
            else:
                self._locks[message_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


# Built once (its cache key computed once); the rows come as parameters.
_CLAIM = insert(InboxMessage).on_conflict_do_nothing().returning(InboxMessage.message_id)


async def claim_inbox(session: AsyncSession, consumer: str, message_id: str) -> bool:
    """Record the message as processed; False when another delivery already did (then roll back).

    A concurrent duplicate blocks on the first one's uncommitted row and then conflicts, so exactly
    one transaction per (consumer, message_id) ever commits.
    """
    return (await session.scalar(_CLAIM, {"consumer": consumer, "message_id": message_id})) is not None


async def claim_inbox_many(session: AsyncSession, consumer: str, message_ids: list[str]) -> set[str]:
    """`claim_inbox` for several messages in one statement; returns the ids claimed (each once, however often
    it is listed; the others were processed before)."""
    return await claim_inbox_with_results(session, consumer, dict.fromkeys(message_ids))


async def claim_inbox_with_results(
    session: AsyncSession, consumer: str, results: dict[str, dict[str, Any] | None]
) -> set[str]:
    """`claim_inbox` with the answer stored (as `claim_settled` does) for several messages in one statement:
    {message id: result}; returns the ids claimed (the others were recorded by another delivery, whose rows
    stay as they are)."""
    # Rows as parameters of one cached statement (SQLAlchemy sends them as one multi-row INSERT); a VALUES
    # list built into the statement has no cache key and is compiled anew every time. A message claimed
    # without a result leaves the column out: SQL NULL, as `claim_inbox` leaves it (None would be JSON null).
    claimed: set[str] = set()
    with_result = [{"consumer": consumer, "message_id": m, "result": r} for m, r in results.items() if r is not None]
    without = [{"consumer": consumer, "message_id": m} for m, r in results.items() if r is None]
    for rows in (with_result, without):
        if rows:
            claimed.update((await session.scalars(_CLAIM, rows)).all())
    return claimed


class Outbox:
    """Adds outbox rows for one producer (a topic of `lanes` under its lane's producer name) and pokes the
    relays after the transaction commits."""

    def __init__(
        self, producer: str, on_commit: Callable[[], None] | None = None, lanes: Mapping[str, str] | None = None
    ) -> None:
        self.producer = producer
        self._on_commit = on_commit
        self._lanes = {topic: f"{producer}.{lane}" for topic, lane in (lanes or {}).items()}

    def add(self, session: AsyncSession, topic: str, key: str, message: Message) -> None:
        session.add(
            OutboxMessage(
                producer=self._lanes.get(topic, self.producer),
                topic=topic,
                key=key,
                message_id=message.message_id,
                payload=message.model_dump(mode="json"),
            )
        )

    def committed(self) -> None:
        if self._on_commit is not None:
            self._on_commit()


def parked_view(row: OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "producer": row.producer,
        "topic": row.topic,
        "key": row.key,
        "message_id": row.message_id,
        "send_attempts": row.send_attempts,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "parked_at": row.parked_at,
    }


async def parked_outbox(session: AsyncSession, limit: int) -> list[dict[str, Any]]:
    """Outbox rows the broker refused for good, oldest first (their payload stays in the table)."""
    rows = await session.scalars(
        select(OutboxMessage).where(OutboxMessage.parked_at.is_not(None)).order_by(OutboxMessage.id).limit(limit)
    )
    return [parked_view(row) for row in rows]


async def unpark_outbox(session: AsyncSession, row_id: int) -> dict[str, Any] | None:
    """Hand a parked row back to its producer's relay with a fresh attempt count; None if not parked."""
    row = await session.scalar(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.parked_at.is_not(None))
        .values(parked_at=None, send_attempts=0)
        .returning(OutboxMessage)
    )
    return parked_view(row) if row is not None else None


async def begin_attempt(session: AsyncSession, consumer: str, message_id: str) -> tuple[int, str | None]:
    """Count one more start on a message inside the caller's transaction; returns (attempts, last error)."""
    stmt = (
        _one_more(insert(DeliveryAttempt))
        .values(consumer=consumer, message_id=message_id, attempts=1)
        .returning(DeliveryAttempt.attempts, DeliveryAttempt.last_error)
    )
    attempts, last_error = (await session.execute(stmt)).one()
    return int(attempts), last_error


async def count_attempt(
    sessions: async_sessionmaker[AsyncSession], consumer: str, message_id: str
) -> tuple[int, str | None]:
    """Count one more start on a message, committed before the work begins; returns (attempts, last error)."""
    async with autocommit(sessions) as session:  # one statement: no transaction around it
        return await begin_attempt(session, consumer, message_id)


async def note_attempt_failed(
    sessions: async_sessionmaker[AsyncSession], consumer: str, message_id: str, error: str, counts: bool
) -> None:
    """Keep the reason; an attempt that failed on an outage (not the message's fault) is given back."""
    values: dict[str, Any] = {"last_error": error[:2000], "updated_at": func.now()}
    if not counts:
        values["attempts"] = func.greatest(DeliveryAttempt.attempts - 1, 0)
    async with autocommit(sessions) as session:
        await session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.consumer == consumer, DeliveryAttempt.message_id == message_id)
            .values(**values)
        )


async def drop_attempts(session: AsyncSession, consumer: str, message_id: str) -> None:
    """Forget a settled message's count inside the caller's transaction (the one that settles it)."""
    await session.execute(
        delete(DeliveryAttempt).where(DeliveryAttempt.consumer == consumer, DeliveryAttempt.message_id == message_id)
    )


async def forget_attempts(sessions: async_sessionmaker[AsyncSession], consumer: str, message_id: str) -> None:
    async with autocommit(sessions) as session:
        await drop_attempts(session, consumer, message_id)


async def begin_attempts(
    sessions: async_sessionmaker[AsyncSession], consumer: str, message_ids: list[str]
) -> dict[str, tuple[int, str | None]]:
    """`count_attempt` for several messages in one statement and one commit (a consumer that handles
    records in groups): message id → (attempts, last error)."""
    ids = list(dict.fromkeys(message_ids))  # one row may be updated only once per statement
    if not ids:
        return {}
    stmt = _one_more(insert(DeliveryAttempt)).returning(
        DeliveryAttempt.message_id, DeliveryAttempt.attempts, DeliveryAttempt.last_error
    )
    async with autocommit(sessions) as session:  # rows as parameters: a cached statement (claim_inbox_with_results)
        rows = (
            await session.execute(stmt, [{"consumer": consumer, "message_id": m, "attempts": 1} for m in ids])
        ).all()
    return {m: (int(n), err) for m, n, err in rows}


async def drop_attempts_of(session: AsyncSession, consumer: str, message_ids: list[str]) -> None:
    """`drop_attempts` for several messages, inside the caller's transaction."""
    if message_ids:
        await session.execute(
            delete(DeliveryAttempt).where(
                DeliveryAttempt.consumer == consumer, DeliveryAttempt.message_id.in_(message_ids)
            )
        )
