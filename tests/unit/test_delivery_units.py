"""Pure pieces of the delivery core: in-order commit positions, dead-letter bodies, command keys."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import random

from aiokafka.partitioner import DefaultPartitioner

from shared.contracts import Stage, StageCommand
from shared.delivery import Exclusive, command_key
from shared.kafka import (
    ENCODING_HEADER,
    ORIGINAL_SHA256_HEADER,
    ORIGINAL_SIZE_HEADER,
    TRUNCATED_HEADER,
    dead_letter_body,
)
from shared.parallel import OrderedOffsets
from shared.partitioning import partition_for


def test_commit_position_is_the_first_unfinished_offset() -> None:
    offsets = OrderedOffsets()
    for o in (10, 11, 12, 15):  # gaps (compaction, transaction markers) are fine
        offsets.add(o)
    assert offsets.position is None
    assert offsets.finish(11) is False and offsets.position is None  # 10 still runs
    assert offsets.finish(12) is False
    assert offsets.finish(10) is True and offsets.position == 13  # 10, 11, 12 done: commit up to 13
    assert len(offsets) == 1
    assert offsets.finish(99) is False  # never handed out: ignored
    assert offsets.finish(15) is True and offsets.position == 16 and len(offsets) == 0


def test_commit_position_in_random_completion_order() -> None:
    rng = random.Random(7)
    offsets = OrderedOffsets()
    handed = list(range(100))
    for o in handed:
        offsets.add(o)
    done: set[int] = set()
    for o in rng.sample(handed, len(handed)):
        offsets.finish(o)
        done.add(o)
        first_unfinished = next((x for x in handed if x not in done), 100)
        expected = None if first_unfinished == 0 else first_unfinished
        assert offsets.position == expected


def test_a_small_dead_letter_body_is_the_original() -> None:
    copy = dead_letter_body(b"{not json", limit=100)
    assert copy.body == b"{not json" and copy.headers == {}


def test_a_large_dead_letter_body_is_compressed_with_size_and_checksum() -> None:
    body = b'{"keyword": "running shoes", "volume": 100},' * 5000
    copy = dead_letter_body(body, limit=50_000)
    assert len(copy.body) <= 50_000 and gzip.decompress(copy.body) == body
    assert copy.headers[ENCODING_HEADER] == "gzip" and TRUNCATED_HEADER not in copy.headers
    assert copy.headers[ORIGINAL_SIZE_HEADER] == str(len(body))
    assert copy.headers[ORIGINAL_SHA256_HEADER] == hashlib.sha256(body).hexdigest()


def test_an_incompressible_dead_letter_body_keeps_its_start() -> None:
    body = random.Random(1).randbytes(300_000)
    copy = dead_letter_body(body, limit=100_000)
    assert len(copy.body) <= 100_000
    start = gzip.decompress(copy.body)
    assert body.startswith(start) and 50_000 < len(start) < 100_000
    assert copy.headers[TRUNCATED_HEADER] == f"first {len(start)} of 300000 bytes"
    assert copy.headers[ORIGINAL_SHA256_HEADER] == hashlib.sha256(body).hexdigest()


def test_commands_spread_over_partitions_except_clustering() -> None:
    def cmd(stage: Stage, seq: int = 0) -> StageCommand:
        return StageCommand(account_id="a", site_id="site-1", run_id="r", stage=stage, batch_seq=seq, item_ids=[1])

    assert command_key(cmd(Stage.CLUSTER)) == "site-1"
    ideate = cmd(Stage.IDEATE)
    assert command_key(ideate) == f"spread:0:{ideate.message_id}"
    assert command_key(ideate.model_copy(update={"attempt": 2})) == command_key(ideate)  # asked again: same key
    six = list(range(6))
    # a stage's batches go round the partitions by sequence: each of two replicas (three partitions each)
    # holds half of any run of consecutive batches
    placed = [partition_for(command_key(cmd(Stage.DRAFTS, seq)).encode(), six, six) for seq in range(74)]
    assert placed[:8] == [0, 1, 2, 3, 4, 5, 0, 1]
    assert sum(p < 3 for p in placed) == 38  # 12 rounds of six and two more: 38 and 36
    # the site key of stage 1 and any other key are hashed as the Java client hashes them
    for key in (b"site-1", b"spread:x:1", b"spread:"):
        assert partition_for(key, six, six) == DefaultPartitioner()(key, six, six)
    assert partition_for(None, six, six) in six  # no key: any partition
    assert partition_for(command_key(cmd(Stage.IDEATE, 7)).encode(), [3, 0, 2, 1], [0]) == 3  # 7 mod 4, sorted


async def test_a_duplicate_waits_for_the_first_holder() -> None:
    exclusive, order = Exclusive(), []

    async def deliver(tag: str, seconds: float) -> None:
        async with exclusive.hold("cmd-1"):
            order.append(f"{tag} start")
            await asyncio.sleep(seconds)
            order.append(f"{tag} end")

    await asyncio.gather(deliver("first", 0.05), deliver("duplicate", 0))
    assert order == ["first start", "first end", "duplicate start", "duplicate end"]
    assert len(exclusive) == 0  # nothing left behind
