"""How a draft is written: a frame call (meta, intro, conclusion, FAQ), then one call per H2 section.

Writing section by section keeps length under control: each section gets its share of the words left
after the frame, so the whole lands near the target even for long articles.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, create_model

from services.writer import headings, quality
from shared import prompts
from shared.ai import AiClient, AiError, Usage, budgets
from shared.ai.schema import SENT_MAX_LENGTH
from shared.contracts import StageOptions
from shared.safe_html import inert_markdown, render_markdown
from shared.text import normalise, one_line, slugify, word_count


# Bounds: what a good answer needs with room to spare, so a looping model is stopped by the schema (where the
# provider enforces it) and by max_tokens (everywhere). Meta fields are trimmed to their SEO limits afterwards.
class FaqItem(BaseModel):
    question: str = Field(min_length=10, max_length=150)
    answer: str = Field(min_length=20, max_length=600, description="Two to four sentences")


class DraftFrame(BaseModel):
    meta_title: str = Field(
        min_length=10, max_length=100, description="At most 60 characters, contains the primary keyword"
    )
    meta_description: str = Field(min_length=50, max_length=300, description="At most 160 characters")
    intro_markdown: str = Field(min_length=80, max_length=5000, description="Introduction paragraph(s), no heading")
    conclusion_markdown: str = Field(min_length=80, max_length=5000, description="Conclusion paragraph(s), no heading")
    faq: list[FaqItem] = Field(min_length=1, max_length=6)


class SectionText(BaseModel):
    section_markdown: str = Field(
        min_length=40, max_length=20_000, description="The section body; H3 subheadings as '### ' lines if given"
    )


@dataclass
class Section:
    heading: str
    subheadings: list[str]


def sections_of(outline: list[dict[str, Any]]) -> list[Section]:
    sections: list[Section] = []
    for item in outline:
        if item.get("level", 2) == 2 or not sections:
            sections.append(Section(str(item["heading"]), []))
        else:
            sections[-1].subheadings.append(str(item["heading"]))
    return sections


def trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "…"


FAQ_COUNT = 3
FAQ_WORDS = 60  # a question and a short answer
SHORT_SECTION = 0.35  # of its target words: below this a section is asked again
META_TOKENS = budgets.chars(100 + 300)  # meta title and description at their schema bounds


CHARS_PER_WORD = 10  # a prose field's bound: English runs ~6 characters a word, longer-worded languages ~8


def prose_chars(words: int) -> int:
    """The most characters a prose field of `words` words may take: room for a good model to overshoot its
    target, while a looping one is closed there (by the provider's grammar, or clipped on validation)."""
    return max(400, words * CHARS_PER_WORD)


@functools.cache
def frame_model(edge_words: int) -> type[DraftFrame]:
    """DraftFrame bounded to this draft: intro and conclusion sized to `edge_words`, the FAQ to FAQ_COUNT."""
    limit = prose_chars(edge_words)
    bounded: type[DraftFrame] = create_model(
        "DraftFrame",
        __base__=DraftFrame,
        intro_markdown=(str, Field(min_length=80, max_length=limit, description="Introduction, no heading")),
        conclusion_markdown=(str, Field(min_length=80, max_length=limit, description="Conclusion, no heading")),
        faq=(list[FaqItem], Field(min_length=1, max_length=FAQ_COUNT)),
    )
    return bounded


def section_chars(words: int, subheadings: int) -> int:
    """A section's bound: its share of the words and its H3 lines."""
    return prose_chars(words) + 80 * subheadings


@functools.cache
def section_model(words: int, subheadings: int) -> type[SectionText]:
    """SectionText bounded to its share of the words (and its H3 lines)."""
    bounded: type[SectionText] = create_model(
        "SectionText",
        __base__=SectionText,
        section_markdown=(str, Field(
            min_length=40, max_length=section_chars(words, subheadings),  # sent only up to SENT_MAX_LENGTH
            description="The section body; H3 subheadings as '### ' lines if given",
        )),
    )  # fmt: skip
    return bounded


def frame_budget(edge_words: int) -> int:
    """Tokens for the frame: intro and conclusion of `edge_words` each, the FAQ, the meta fields; never less
    than the bounded schema's longest reply, so a model that fills every field still closes its JSON."""
    wanted = budgets.prose(2 * edge_words + FAQ_COUNT * FAQ_WORDS) + META_TOKENS
    return max(wanted, budgets.from_schema(frame_model(edge_words)))


def frame_problems(frame: DraftFrame) -> str | None:
    """Schema-valid but useless: one text pasted into every field (a small model's habit)."""
    texts = [frame.meta_title, frame.meta_description, frame.intro_markdown, frame.conclusion_markdown]
    if len({" ".join(t.lower().split()) for t in texts}) < len(texts):
        return "fields repeat each other's text: the meta title, meta description, intro and conclusion must differ"
    return None


def too_short(text: str, target: int) -> str | None:
    """A section far under its share is asked again (small models often stop after a sentence or two)."""
    words = word_count(text)
    return f"the section has {words} words, the target is {target}" if words < SHORT_SECTION * target else None


def section_problems(text: str, target: int) -> str | None:
    """Asked again while asks are left; the last reply stands either way and the quality gate judges the draft
    (a held-back draft is kept with its reasons, where a failed call would leave nothing to look at)."""
    return too_short(text, target) or quality.prose_problems(text)


def frame_text_problems(frame: DraftFrame) -> str | None:
    texts = [frame.meta_title, frame.meta_description, frame.intro_markdown, frame.conclusion_markdown]
    return quality.prose_problems("\n\n".join(texts + [f"{q.question} {q.answer}" for q in frame.faq]))


def section_budget(words: int, subheadings: int) -> int:
    """Tokens for one section of `words` words with its H3 lines; where the section's length bound goes out in
    the schema (short sections), at least the bounded reply's longest form, so a looping model closes its JSON."""
    budget = budgets.prose(words) + 16 * subheadings
    limit = section_chars(words, subheadings)
    return max(budget, budgets.chars(limit) + budgets.JSON_OVERHEAD) if limit <= SENT_MAX_LENGTH else budget


def context(brief: dict[str, Any]) -> dict[str, str]:
    """The brief's values every draft prompt template gets (see shared/prompts/draft_*.user.txt)."""
    keywords = [brief["primary_keyword"], *brief.get("secondary_keywords", [])]
    return {
        "title": str(brief["title"]),
        "content_type": str(brief.get("content_type", "guide")),
        "primary_keyword": str(brief["primary_keyword"]),
        "keywords": ", ".join(keywords),
        "brief": str(brief.get("brief", "")),
    }


@dataclass
class WrittenDraft:
    row: dict[str, Any]
    words: int
    held: str | None = None  # why the quality gate held it back; None when it passed


async def write_draft(ai: AiClient, brief: dict[str, Any], options: StageOptions, usage: Usage) -> WrittenDraft:
    system = prompts.render("writer.system", options)
    target = int(brief.get("target_words") or options.target_words)
    sections = sections_of(brief.get("outline", []))
    edge_words = max(40, round(target * 0.07))
    frame = await ai.structured(
        system,
        prompts.render(
            "draft_frame.user",
            options,
            **context(brief),
            target_words=str(edge_words),
            faq_count=str(FAQ_COUNT),
        ),
        frame_model(edge_words),
        "draft-frame",
        usage,
        max_tokens=frame_budget(edge_words),
        language_name=options.language,
        # Asked again while asks are left; the last reply stands and the quality gate judges the whole draft.
        soft_check=lambda reply: frame_problems(reply) or frame_text_problems(reply),
    )
    # a question asked twice would make a repeated section (models repeat themselves, the fake included)
    faq: dict[str, FaqItem] = {}
    for item in frame.faq:
        faq.setdefault(normalise(item.question), item)
    faq_md = "\n\n".join(f"### {one_line(item.question)}\n\n{item.answer.strip()}" for item in faq.values())
    used = word_count(frame.intro_markdown) + word_count(frame.conclusion_markdown) + word_count(faq_md)
    per_section = max(60, (target - used) // max(1, len(sections)))

    async def section(s: Section) -> str:
        outline = "".join(f"### {h}\n" for h in s.subheadings)
        try:
            text = await section_text(s, outline)
        except AiError as exc:
            raise exc.within(f"section '{trim(s.heading, 60)}'") from exc
        body = re.sub(r"^##\s+.*\n+", "", text.section_markdown.strip())  # the H2 is ours to write
        return f"## {one_line(s.heading)}\n\n{headings.tidy(body, s.subheadings)}"

    async def section_text(s: Section, outline: str) -> SectionText:
        return await ai.structured(
            system,
            prompts.render(
                "draft_section.user",
                options,
                **context(brief),
                heading=s.heading,
                target_words=str(per_section),
                outline=f"Outline:\n{outline}" if outline else "",
            ),
            section_model(per_section, len(s.subheadings)),
            "draft-section",
            usage,
            max_tokens=section_budget(per_section, len(s.subheadings)),
            language_name=options.language,
            soft_check=lambda reply: section_problems(
                headings.tidy(reply.section_markdown, s.subheadings), per_section
            ),
            soft_loops=True,  # the quality gate catches loops: the draft is held with its reasons, not failed
        )

    # A failed section fails the draft: the other sections' calls are cancelled rather than paid for.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(section(s)) for s in sections]
    except* AiError as failed:
        first = failed.exceptions[0]
        raise first if isinstance(first, AiError) else AiError(str(first), transient=False) from None
    bodies = [t.result() for t in tasks]
    title = brief["title"]
    body_markdown = "\n\n".join(
        [frame.intro_markdown.strip(), *bodies, "## Conclusion", frame.conclusion_markdown.strip()]
        + (["## FAQ", faq_md] if faq_md else [])
    )
    words = word_count(body_markdown)
    meta_title = trim(frame.meta_title, quality.META_TITLE_MAX)
    meta_description = trim(frame.meta_description, quality.META_DESCRIPTION_MAX)
    outline_headings = [s.heading for s in sections] + [h for s in sections for h in s.subheadings]
    q = quality.check(
        title=title,
        meta_title=meta_title,
        meta_description=meta_description,
        body_markdown=body_markdown,
        words=words,
        target_words=target,
        outline_headings=outline_headings,
        primary_keyword=brief["primary_keyword"],
        banned_words=options.banned_words,
    )
    stored_markdown = inert_markdown(body_markdown)  # keyword and model text carry no live markup out of here
    row = {
        "title": title,
        "slug": slugify(title),
        "meta_title": meta_title,
        "meta_description": meta_description,
        "body_markdown": stored_markdown,
        "body_html": render_markdown(stored_markdown),
        "word_count": words,
        "target_words": target,
        "quality_score": q.score,
        "quality_notes": q.notes,
        "quality_passed": q.passed,
    }
    return WrittenDraft(row, words, None if q.passed else quality.held_reason(q))
