"""Strict stage order: no stage-N+1 command is published before the last stage-N result."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from shared.contracts import StageCommand, StageResult
from shared.db.models import StageBatch
from shared.topics import STAGE_COMMAND_TOPICS, STAGE_RESULTS
from tests.helpers import configure, create_site, import_keywords, keyword_set, read_topic, start_run, wait_run


async def test_no_stage_starts_before_previous_stage_results_are_all_in(
    stack: Stack, api: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    site = create_site(api)
    import_keywords(api, site, keyword_set(4, 6))
    # Small batches so every stage has several, more than the in-flight window releases at once.
    configure(api, site, batch_sizes={"1": 3, "2": 1, "3": 2, "4": 1, "5": 1, "6": 1})
    run = start_run(api, site)
    view = wait_run(api, run["run_id"])
    assert view["status"] == "completed", view
    run_id = run["run_id"]

    results: list[StageResult] = [
        StageResult.model_validate_json(r.value)
        for r in await read_topic(stack.kafka_bootstrap, STAGE_RESULTS, lambda r: run_id.encode() in r.value)
    ]
    commands: list[tuple[StageCommand, int]] = []
    for topic in sorted(set(STAGE_COMMAND_TOPICS.values())):
        for r in await read_topic(stack.kafka_bootstrap, topic, lambda r: run_id.encode() in r.value):
            commands.append((StageCommand.model_validate_json(r.value), r.timestamp))

    async with db() as s:
        batches = dict(
            (
                await s.execute(
                    select(StageBatch.stage, func.count()).where(StageBatch.run_id == run_id).group_by(StageBatch.stage)
                )
            ).all()
        )
    assert all(batches.get(n, 0) >= 2 for n in range(1, 7)), batches  # a barrier needs several batches to mean much

    for stage in range(1, 6):
        stage_results = [r for r in results if r.stage == stage]
        next_commands = [c for c, _ in commands if c.stage == stage + 1]
        assert len({r.command_id for r in stage_results}) == batches[stage]
        assert next_commands, f"no commands for stage {stage + 1}"
        last_result = max(r.occurred_at for r in stage_results)
        first_next = min(c.occurred_at for c in next_commands)
        assert first_next > last_result, (
            f"stage {stage + 1} command created at {first_next} before stage {stage} result at {last_result}"
        )
        # and on the broker: the next stage's first command was appended after the stage's last result
        result_ts = max(
            r.timestamp
            for r in await read_topic(
                stack.kafka_bootstrap,
                STAGE_RESULTS,
                lambda r, st=stage: run_id.encode() in r.value and f'"stage":{st},'.encode() in r.value,
            )
        )
        command_ts = min(ts for c, ts in commands if c.stage == stage + 1)
        assert command_ts >= result_ts
