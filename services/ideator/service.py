"""Stage 2 logic: per cluster, one model call for N ideas, each with a brief, an outline and a length."""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ideator import repository as repo
from services.ideator.repository import ClusterBrief
from shared import prompts
from shared.ai import AiClient, AiError, Usage, budgets
from shared.contracts import ItemFailure, StageCommand, StageOptions
from shared.contracts import Usage as BatchUsage
from shared.db.session import autocommit
from shared.entity_events import IdeaCreated, entity_event
from shared.text import normalise
from shared.worker import BatchOutcome

_HEADING_NOISE = re.compile(r"^(?:#+\s*)?(?:\d+(?:\.\d+)*[.):]|[ivx]+[.)])?\s*", re.I)
ContentType = Literal["guide", "how-to", "listicle", "comparison", "review", "explainer", "checklist"]
Intent = Literal["informational", "commercial", "transactional", "navigational"]


# Bounded, so a looping model stops early (schema where the provider enforces it, max_tokens everywhere).
MAX_OUTLINE_ITEMS = 16
MAX_IDEAS = 20  # StageOptions.ideas_per_cluster's upper bound
IDEA_TOKENS = 700  # one idea at its realistic size (the bounds allow more; max_tokens is the stop)


class OutlineItem(BaseModel):
    level: int = Field(ge=2, le=3, description="2 for an H2 section, 3 for an H3 under the previous H2")
    heading: str = Field(min_length=3, max_length=120, description="The heading text only: no number, no '#'")


class IdeaDraft(BaseModel):
    title: str = Field(min_length=5, max_length=120)
    content_type: ContentType
    intent: Intent
    primary_keyword: str = Field(min_length=1, max_length=100, description="Exactly one of the given keywords")
    secondary_keywords: list[Annotated[str, Field(max_length=100)]] = Field(
        max_length=10, description="Other given keywords to cover"
    )
    outline: list[OutlineItem] = Field(
        min_length=1, max_length=MAX_OUTLINE_ITEMS, description="H2/H3 outline of the article body"
    )
    target_words: int = Field(ge=0, le=20_000)
    brief: str = Field(
        min_length=40, max_length=800, description="One paragraph for the writer: angle, reader, what to cover"
    )


class IdeaSet(BaseModel):
    ideas: list[IdeaDraft] = Field(min_length=1, max_length=MAX_IDEAS)


@functools.cache
def idea_set(count: int) -> type[IdeaSet]:
    """IdeaSet bounded to the `count` ideas asked for. Asked for one, a small model goes on proposing more until
    max_tokens cuts it off; with maxItems at the count a grammar-constrained provider closes the list there."""
    bounded: type[IdeaSet] = create_model(
        "IdeaSet", __base__=IdeaSet, ideas=(list[IdeaDraft], Field(min_length=1, max_length=count))
    )
    return bounded


def ideas_budget(count: int) -> int:
    return budgets.JSON_OVERHEAD + count * IDEA_TOKENS


def degenerate(answer: IdeaSet) -> str | None:
    """What a schema-valid but useless answer looks like (a small local model's habit): the same heading
    over and over, a brief that only repeats the title. Named so the re-ask can say what to fix."""
    for n, idea in enumerate(answer.ideas, 1):
        headings = [normalise(o.heading) for o in idea.outline]
        distinct = len(set(headings))
        if len(headings) >= 3 and distinct < max(3, len(headings) // 2):
            top = max(set(headings), key=headings.count)
            return f"idea {n}: the outline repeats '{top}' {headings.count(top)} times; give distinct section headings"
        if normalise(idea.brief) == normalise(idea.title):
            return f"idea {n}: the brief only repeats the title; write what the article covers"
    return None


def ideas_system(options: StageOptions) -> str:
    return prompts.render("ideas.system", options)


def ideas_prompt(cluster: ClusterBrief, options: StageOptions) -> str:
    return prompts.render(
        "ideas.user",
        options,
        cluster_name=cluster.name,
        cluster_description=cluster.description,
        cluster_intent=cluster.intent,
        keywords=", ".join(cluster.keywords[:40]),
        ideas_per_cluster=str(options.ideas_per_cluster),
        target_words=str(options.target_words),
    )


def clean_heading(heading: str) -> str:
    """A heading without the numbering or '#' marks models copy from outlines ("2. How to ...")."""
    return _HEADING_NOISE.sub("", heading.strip()).strip()[:200]


def clean_idea(draft: IdeaDraft, cluster: ClusterBrief, options: StageOptions) -> dict[str, Any]:
    """Hold the model to the cluster: keywords from the cluster only, a usable outline, a sane length."""
    known = {normalise(k): k for k in cluster.keywords}
    primary = known.get(normalise(draft.primary_keyword), cluster.keywords[0] if cluster.keywords else cluster.name)
    secondary = [known[n] for n in dict.fromkeys(normalise(k) for k in draft.secondary_keywords) if n in known]
    secondary = [k for k in secondary if k != primary][:10]
    seen: set[str] = set()
    outline = []
    for item in draft.outline:
        heading = clean_heading(item.heading)
        if heading and normalise(heading) not in seen:  # a heading twice makes a repeated section
            seen.add(normalise(heading))
            outline.append({"level": 3 if item.level >= 3 else 2, "heading": heading})
    if not outline or outline[0]["level"] != 2:
        outline.insert(0, {"level": 2, "heading": f"What to know about {primary}"})
    target = draft.target_words if 300 <= draft.target_words <= 5000 else options.target_words
    return {
        "title": draft.title.strip()[:300] or primary.title(),
        "content_type": draft.content_type,
        "intent": draft.intent,
        "primary_keyword": primary,
        "secondary_keywords": secondary,
        "outline": outline,
        "target_words": target,
        "brief": draft.brief.strip(),
    }


class IdeatorService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ai: AiClient) -> None:
        self._sessions = sessions
        self._ai = ai

    async def work(self, cmd: StageCommand) -> BatchOutcome:
        usage = Usage()
        async with autocommit(self._sessions) as session:  # reads only
            clusters, done = await repo.load_clusters(session, cmd.site_id, cmd.item_ids)
        outcome = BatchOutcome(skipped=len(done), calls=usage.records)
        found = {c.id for c in clusters}
        outcome.failures += [
            ItemFailure(item_id=i, reason="cluster not found for this site") for i in cmd.item_ids if i not in found
        ]
        todo = [c for c in clusters if c.id not in done]
        answers = await asyncio.gather(*(self._ideas(c, cmd.options, usage) for c in todo))
        rows: list[dict[str, Any]] = []
        for cluster, answer in zip(todo, answers, strict=True):
            if isinstance(answer, AiError):
                outcome.failures.append(ItemFailure(item_id=cluster.id, reason=answer.reason))
                continue
            ideas = answer.ideas  # idea_set(n) holds at most the n asked for (longer lists are clipped on validation)
            if not ideas:
                outcome.failures.append(ItemFailure(item_id=cluster.id, reason="the model proposed no ideas"))
                continue
            rows += [
                {"site_id": cmd.site_id, "cluster_id": cluster.id, "run_id": cmd.run_id, "seq": seq}
                | clean_idea(d, cluster, cmd.options)
                for seq, d in enumerate(ideas)
            ]
            outcome.processed += 1

        async def persist(session: AsyncSession) -> None:
            ideas = await repo.insert_ideas(session, rows)
            outcome.created = len(ideas)
            outcome.events = [
                entity_event(
                    cmd.account_id,
                    cmd.site_id,
                    cmd.run_id,
                    IdeaCreated(
                        id=i.id,
                        cluster_id=i.cluster_id,
                        title=i.title,
                        content_type=i.content_type,
                        intent=i.intent,
                        primary_keyword=i.primary_keyword,
                        target_words=i.target_words,
                    ),
                )
                for i in ideas
            ]

        outcome.persist = persist
        outcome.usage = BatchUsage(
            model_calls=len(usage.records),
            prompt_tokens=sum(r.prompt_tokens for r in usage.records),
            completion_tokens=sum(r.completion_tokens for r in usage.records),
            clusters_ideated=outcome.processed,
        )
        return outcome

    async def _ideas(self, cluster: ClusterBrief, options: StageOptions, usage: Usage) -> IdeaSet | AiError:
        try:
            return await self._ai.structured(
                ideas_system(options),
                ideas_prompt(cluster, options),
                idea_set(options.ideas_per_cluster),
                "ideas",
                usage,
                max_tokens=ideas_budget(options.ideas_per_cluster),
                language_name=options.language,
                # Asked again while asks are left; the last reply stands: clean_idea drops repeated headings, and
                # the writer's quality gate judges the draft (a failed cluster would leave nothing to look at).
                soft_check=degenerate,
            )
        except AiError as exc:
            return exc
