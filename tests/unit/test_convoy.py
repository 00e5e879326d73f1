"""The clusterer's convoy over a key's turns (services/clusterer/convoy.py): who rides along, what a failed pass
leaves, and that a rider's retry gets the outcome it was handed instead of a new pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.clusterer.convoy import Convoy, Rider
from services.clusterer.repository import KeywordRow
from shared.contracts import Stage, StageCommand, StageOptions
from shared.turns import KeyTurns, Turn
from shared.worker import BatchOutcome


def command(seq: int, run_id: str = "run-1", options: StageOptions | None = None) -> StageCommand:
    return StageCommand(
        account_id="a",
        site_id="s",
        run_id=run_id,
        stage=Stage.CLUSTER,
        batch_seq=seq,
        item_ids=[seq * 10 + i for i in range(3)],
        options=options or StageOptions(),
    )


def rider(cmd: StageCommand, turn: Turn, n: int = 3) -> Rider:
    return Rider(cmd, [KeywordRow(cmd.batch_seq * 10 + i, f"k{i}", 0) for i in range(n)], set(), turn)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@dataclass
class Queue:
    """One site's turns, a convoy, and its first batch, whose turn it is (it clusters)."""

    turns: KeyTurns
    convoy: Convoy
    lead: Turn
    behind: list[Turn]  # received after the first batch, in offset order
    first: Rider


async def queue(behind: int, max_keywords: int = 100) -> Queue:
    turns, convoy = KeyTurns(), Convoy(max_keywords=max_keywords)
    lead, *later = (turns.take(b"s") for _ in range(behind + 1))
    first = rider(command(0), lead)
    assert await convoy.wait(first) is None  # its turn
    return Queue(turns, convoy, lead, later, first)


async def test_the_loaded_batches_right_behind_ride_along_and_leave_with_their_outcomes() -> None:
    q = await queue(behind=4, max_keywords=12)
    convoy, lead, first = q.convoy, q.lead, q.first
    t1, t2, t3, t4 = q.behind

    waits = {
        seq: asyncio.create_task(convoy.wait(rider(cmd, t)))
        for seq, cmd, t in [(1, command(1), t1), (3, command(3), t3), (4, command(4), t4)]
    }
    await settle()
    # batch 2 is not loaded yet: nothing behind it may go ahead of it
    assert [r.cmd.batch_seq for r in convoy.riders_behind(lead, first.cmd, 3)] == [1]
    waits[2] = asyncio.create_task(convoy.wait(rider(command(2), t2)))
    await settle()
    riders = convoy.riders_behind(lead, first.cmd, 3)
    assert [r.cmd.batch_seq for r in riders] == [1, 2, 3]  # 12 keywords: batch 4 would pass the cap

    outcomes = [BatchOutcome(processed=3) for _ in riders]
    convoy.deliver(riders, outcomes)
    await settle()
    assert [waits[s].result() for s in (1, 2, 3)] == outcomes
    assert not waits[4].done()
    assert lead.behind() == [t4]  # the riders left the queue; batch 4 is next after the lead
    lead.end()
    await settle()
    assert waits[4].result() is None  # its own turn


async def test_a_pass_that_never_committed_leaves_its_riders_waiting_for_their_own_turn() -> None:
    q = await queue(behind=1)
    convoy, lead, first, (t1,) = q.convoy, q.lead, q.first, q.behind
    waiting = asyncio.create_task(convoy.wait(rider(command(1), t1)))
    await settle()
    assert [r.cmd.batch_seq for r in convoy.riders_behind(lead, first.cmd, 3)] == [1]
    lead.end()  # the pass failed (or another delivery won): nothing delivered
    await settle()
    assert waiting.result() is None  # batch 1 clusters itself now


async def test_only_the_same_run_and_options_ride_along() -> None:
    q = await queue(behind=2)
    convoy, lead, first, (t1, t2) = q.convoy, q.lead, q.first, q.behind
    other_options = StageOptions(min_cluster_size=5)
    tasks = [
        asyncio.create_task(convoy.wait(rider(command(1), t1))),
        asyncio.create_task(convoy.wait(rider(command(2, options=other_options), t2))),
    ]
    await settle()
    assert [r.cmd.batch_seq for r in convoy.riders_behind(lead, first.cmd, 3)] == [1]
    assert convoy.riders_behind(lead, command(0, run_id="run-2"), 3) == []
    for task in tasks:
        task.cancel()


async def test_a_rider_tried_again_after_its_outcome_gets_the_same_outcome_not_a_new_pass() -> None:
    q = await queue(behind=1)
    turns, convoy, lead, first, (t1,) = q.turns, q.convoy, q.lead, q.first, q.behind
    second = command(1)
    waiting = asyncio.create_task(convoy.wait(rider(second, t1)))
    await settle()
    riders = convoy.riders_behind(lead, first.cmd, 3)
    handed = BatchOutcome(processed=3)
    convoy.deliver(riders, [handed])
    assert await waiting is handed
    # its result transaction failed; the pool runs the handler again with the same (ended) turn
    assert await asyncio.wait_for(convoy.wait(rider(second, t1)), timeout=1) is handed
    # a new delivery of the same command (asked again: a database lost the pass) is worked again, in its turn
    lead.end()
    again = turns.take(b"s")
    assert await asyncio.wait_for(convoy.wait(rider(second, again)), timeout=1) is None


async def test_a_pass_waits_briefly_for_the_batches_received_behind_it_to_load() -> None:
    q = await queue(behind=2)  # the first batch's turn began while batches 1 and 2 still load their keywords
    convoy, lead, first, (t1, t2) = q.convoy, q.lead, q.first, q.behind

    async def loaded_later(cmd: StageCommand, turn: Turn, after: float) -> BatchOutcome | None:
        await asyncio.sleep(after)
        return await convoy.wait(rider(cmd, turn))

    tasks = [
        asyncio.create_task(loaded_later(command(1), t1, 0.01)),
        asyncio.create_task(loaded_later(command(2), t2, 0.02)),
    ]
    assert convoy.riders_behind(lead, first.cmd, 3) == []  # nothing loaded yet
    loop = asyncio.get_running_loop()
    started = loop.time()
    riders = await convoy.riders_for(lead, first.cmd, 3, patience=1.0)
    assert [r.cmd.batch_seq for r in riders] == [1, 2]  # both, once loaded, without waiting out the patience
    assert loop.time() - started < 0.5
    for task in tasks:
        task.cancel()


async def test_a_batch_behind_that_never_loads_costs_the_pass_at_most_its_patience() -> None:
    q = await queue(behind=1)  # the batch behind never loads
    convoy, lead, first = q.convoy, q.lead, q.first
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await convoy.riders_for(lead, first.cmd, 3, patience=0.05) == []
    assert 0.05 <= loop.time() - started < 0.5
    # nothing received behind it: no wait at all
    alone = KeyTurns().take(b"t")
    started = loop.time()
    assert await convoy.riders_for(alone, command(0), 3, patience=5) == []
    assert loop.time() - started < 0.1
