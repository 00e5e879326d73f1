"""How a draft is written: a frame call (meta, intro, conclusion, FAQ), then one call per H2 section.

Writing section by section keeps length under control: each section gets its share of the words left
after the frame, so the whole lands near the target even for long articles.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from services.writer import quality
from shared import prompts
from shared.ai import AiClient, Usage
from shared.contracts import StageOptions
from shared.safe_html import inert_markdown, render_markdown
from shared.text import one_line, slugify, word_count


class FaqItem(BaseModel):
    question: str
    answer: str


class DraftFrame(BaseModel):
    meta_title: str = Field(description="At most 60 characters, contains the primary keyword")
    meta_description: str = Field(description="At most 160 characters")
    intro_markdown: str = Field(description="Introduction paragraph(s), no heading")
    conclusion_markdown: str = Field(description="Conclusion paragraph(s), no heading")
    faq: list[FaqItem]


class SectionText(BaseModel):
    section_markdown: str = Field(description="The section body; H3 subheadings as '### ' lines if given")


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
        DraftFrame,
        "draft-frame",
        usage,
    )
    faq_md = "\n\n".join(f"### {one_line(q.question)}\n\n{q.answer.strip()}" for q in frame.faq)
    used = word_count(frame.intro_markdown) + word_count(frame.conclusion_markdown) + word_count(faq_md)
    per_section = max(60, (target - used) // max(1, len(sections)))

    async def section(s: Section) -> str:
        outline = "".join(f"### {h}\n" for h in s.subheadings)
        text = await ai.structured(
            system,
            prompts.render(
                "draft_section.user",
                options,
                **context(brief),
                heading=s.heading,
                target_words=str(per_section),
                outline=f"Outline:\n{outline}" if outline else "",
            ),
            SectionText,
            "draft-section",
            usage,
        )
        body = re.sub(r"^##\s+.*\n+", "", text.section_markdown.strip())  # the H2 is ours to write
        return f"## {one_line(s.heading)}\n\n{body}"

    bodies = await asyncio.gather(*(section(s) for s in sections))
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
    }
    return WrittenDraft(row, words)
