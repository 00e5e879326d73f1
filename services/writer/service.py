"""Stages 3 and 4. Stage 3 is local (no model): an idea becomes a task carrying its brief."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.writer import repository as repo
from services.writer.drafting import WrittenDraft, write_draft
from shared.ai import AiClient, AiError, Usage
from shared.contracts import ItemFailure, Stage, StageCommand
from shared.contracts import Usage as BatchUsage
from shared.db.session import autocommit
from shared.entity_events import ContentGenerated, TaskCreated, entity_event
from shared.worker import BatchOutcome


def not_found(ids: list[int], found: set[int], what: str) -> list[ItemFailure]:
    return [ItemFailure(item_id=i, reason=f"{what} not found for this site") for i in ids if i not in found]


class WriterService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ai: AiClient) -> None:
        self._sessions = sessions
        self._ai = ai

    async def work(self, cmd: StageCommand) -> BatchOutcome:
        if cmd.stage is Stage.TASKS:
            return await self._tasks(cmd)
        return await self._drafts(cmd)

    async def _tasks(self, cmd: StageCommand) -> BatchOutcome:
        async with autocommit(self._sessions) as session:  # reads only
            ideas = await repo.load_ideas(session, cmd.site_id, cmd.item_ids)
            done = await repo.ideas_with_tasks(session, cmd.item_ids)
        outcome = BatchOutcome(skipped=len(done))
        outcome.failures = not_found(cmd.item_ids, {i.id for i in ideas}, "idea")
        rows = [
            {
                "site_id": cmd.site_id,
                "idea_id": i.id,
                "run_id": cmd.run_id,
                "title": i.title,
                "brief": {
                    "title": i.title,
                    "content_type": i.content_type,
                    "intent": i.intent,
                    "primary_keyword": i.primary_keyword,
                    "secondary_keywords": i.secondary_keywords,
                    "outline": i.outline,
                    "target_words": i.target_words,
                    "brief": i.brief,
                },
            }
            for i in ideas
            if i.id not in done
        ]
        outcome.processed = len(rows)

        async def persist(session: AsyncSession) -> None:
            tasks = await repo.insert_tasks(session, rows)
            outcome.created = len(tasks)
            outcome.events = [
                entity_event(
                    cmd.account_id, cmd.site_id, cmd.run_id, TaskCreated(id=t.id, idea_id=t.idea_id, title=t.title)
                )
                for t in tasks
            ]

        outcome.persist = persist
        return outcome

    async def _drafts(self, cmd: StageCommand) -> BatchOutcome:
        """Write each task's draft. A task whose draft the quality gate held back in an EARLIER run is written
        again and its draft replaced (regeneration); a draft held back by this very run is not retried here
        (the next run does it, and the orchestrator parks a task that keeps failing). A held-back draft is
        stored with its reasons and reported as a failed item: it goes no further and is not charged."""
        usage = Usage()
        async with autocommit(self._sessions) as session:  # a read only
            tasks, existing = await repo.load_tasks(session, cmd.site_id, cmd.item_ids)
        regenerate = {t: d.id for t, d in existing.items() if not d.quality_passed and d.run_id != cmd.run_id}
        done = set(existing) - set(regenerate)
        outcome = BatchOutcome(skipped=len(done), calls=usage.records)
        outcome.failures = not_found(cmd.item_ids, {t.id for t in tasks}, "writer task")
        todo = [t for t in tasks if t.id not in done]

        async def one(brief: dict[str, Any]) -> WrittenDraft | AiError:
            try:
                return await write_draft(self._ai, brief, cmd.options, usage)
            except AiError as exc:
                return exc

        written = await asyncio.gather(*(one(t.brief) for t in todo))
        rows: list[dict[str, Any]] = []
        replacements: list[tuple[int, dict[str, Any]]] = []
        words = passed = 0
        for task, draft in zip(todo, written, strict=True):
            if isinstance(draft, AiError):
                outcome.failures.append(ItemFailure(item_id=task.id, reason=draft.reason))
                continue
            row = {"site_id": cmd.site_id, "task_id": task.id, "run_id": cmd.run_id} | draft.row
            if task.id in regenerate:
                replacements.append((regenerate[task.id], row))
            else:
                rows.append(row)
            if draft.held is not None:
                outcome.failures.append(ItemFailure(item_id=task.id, reason=draft.held))
            else:
                words += draft.words
                passed += 1
        outcome.processed = passed

        async def persist(session: AsyncSession) -> None:
            # `created` counts the drafts really written that may go on; held-back ones are stored, not counted.
            # Every draft written (held back or not, new or a held one rewritten) is announced: content_generated.
            passed = await repo.insert_drafts(session, [r for r in rows if r["quality_passed"]])
            held = await repo.insert_drafts(session, [r for r in rows if not r["quality_passed"]])
            created = len(passed)
            written = [(d.id, d.task_id, d.title, d.word_count, d.target_words, d.quality_score, d.quality_passed)
                       for d in passed + held]  # fmt: skip
            for draft_id, row in replacements:
                if await repo.replace_draft(session, draft_id, row):
                    created += int(bool(row["quality_passed"]))
                    written.append((draft_id, row["task_id"], row["title"], row["word_count"], row["target_words"],
                                    row["quality_score"], bool(row["quality_passed"])))  # fmt: skip
            outcome.created = created
            outcome.events = [
                entity_event(
                    cmd.account_id,
                    cmd.site_id,
                    cmd.run_id,
                    ContentGenerated(
                        id=draft_id,
                        task_id=task_id,
                        title=title,
                        word_count=words,
                        target_words=target,
                        quality_score=score,
                        status="ready" if ok else "held",
                    ),
                )
                for draft_id, task_id, title, words, target, score, ok in written
            ]

        outcome.persist = persist
        outcome.usage = BatchUsage(
            model_calls=len(usage.records),
            prompt_tokens=sum(r.prompt_tokens for r in usage.records),
            completion_tokens=sum(r.completion_tokens for r in usage.records),
            words_written=words,
        )
        return outcome
