"""Consumer lag per group, topic and partition, with the member that holds each partition.

Committed offsets come from the group coordinator (OffsetFetch), so the figures are exact for a stopped
group too: it has no members, but its offsets stay until they expire (offsets.retention.minutes).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import for_code

from shared.inspection.clients import admin_client, manual_consumer, offset_bounds
from shared.inspection.models import GroupLag, GroupMember, PartitionLag

_NO_OFFSET = -1


async def _describe_group(admin: AIOKafkaAdminClient, group: str) -> dict[str, Any]:
    # One group per request on purpose: aiokafka 0.14 decodes DescribeGroups v3 answers with the v2
    # schema (no authorized_operations field), so every group after the first comes out garbled.
    (response,) = await admin.describe_consumer_groups([group])
    described: dict[str, Any] = response.to_object()["groups"][0]
    return described


async def group_members(admin: AIOKafkaAdminClient, group: str) -> list[GroupMember]:
    """The group's members now, each with the partitions it holds (none for a group the broker does not know)."""
    described = await _describe_group(admin, group)
    return [] if described["error_code"] else _members(described)


def _members(described: dict[str, Any]) -> list[GroupMember]:
    members = []
    for m in described["members"]:
        partitions: list[str] = []
        if described["protocol_type"] == "consumer" and m["member_assignment"]:
            assignment = ConsumerProtocolMemberAssignment.decode(m["member_assignment"])
            partitions = [f"{tp.topic}/{tp.partition}" for tp in assignment.partitions()]
        members.append(
            GroupMember(
                member_id=m["member_id"], client_id=m["client_id"], host=m["client_host"], partitions=partitions
            )
        )
    return members


async def consumer_lag(
    bootstrap: str, groups: Collection[str] | None = None, topics: Collection[str] | None = None
) -> list[GroupLag]:
    """Lag of every consumer group (or of `groups`), optionally only on `topics`, sorted by group.

    A partition a member holds without a committed offset yet is listed with committed/lag None. A group
    name the broker does not know comes back with exists=False.
    """
    collected: list[tuple[str, dict[str, Any], dict[TopicPartition, int]]] = []
    async with admin_client(bootstrap) as admin:
        names = sorted({g for g, *_ in await admin.list_consumer_groups()} if groups is None else set(groups))
        for group in names:
            described = await _describe_group(admin, group)
            committed = {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                if topics is None or tp.topic in topics
            }
            collected.append((group, described, committed))

    wanted: set[TopicPartition] = set()
    holders: dict[str, dict[TopicPartition, GroupMember]] = {}
    members_of: dict[str, list[GroupMember]] = {}
    for group, described, committed in collected:
        members = _members(described) if not described["error_code"] else []
        members_of[group] = members
        holders[group] = {}
        for member in members:
            for text in member.partitions:
                topic, partition = text.rsplit("/", 1)
                if topics is None or topic in topics:
                    holders[group][TopicPartition(topic, int(partition))] = member
        wanted |= set(committed) | set(holders[group])

    end: dict[TopicPartition, int] = {}
    if wanted:
        async with manual_consumer(bootstrap) as consumer:
            _, end = await offset_bounds(consumer, sorted(wanted))

    out = []
    for group, described, committed in collected:
        rows = []
        for tp in sorted(set(committed) | set(holders[group])):
            offset = committed.get(tp, _NO_OFFSET)
            known = offset if offset != _NO_OFFSET else None
            holder = holders[group].get(tp)
            rows.append(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=known,
                    end=end[tp],
                    lag=None if known is None else max(end[tp] - known, 0),
                    member_id=holder.member_id if holder else None,
                    client_id=holder.client_id if holder else None,
                    host=holder.host if holder else None,
                )
            )
        if described["error_code"]:
            state = f"unknown ({for_code(described['error_code']).__name__})"
        else:
            state = described["state"] or "Dead"
        out.append(
            GroupLag(
                group=group,
                exists=state != "Dead" or bool(rows),
                state=state,
                protocol_type=described["protocol_type"] or "",
                members=members_of[group],
                partitions=rows,
                total_lag=sum(r.lag or 0 for r in rows),
            )
        )
    return out
