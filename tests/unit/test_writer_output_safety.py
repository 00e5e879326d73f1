"""The writer's draft row: hostile keywords in the brief and hostile model text come out inert."""

from __future__ import annotations

from typing import Any

import markdown
from pydantic import BaseModel

from services.writer.drafting import DraftFrame, FaqItem, SectionText, write_draft
from shared.ai import Usage
from shared.contracts import StageOptions
from tests.markup import executable_markup

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
PAD = "Plain words that bring the text up to the lengths the writer's schema asks of a model. " * 3


class HostileAi:
    """A model that echoes the keywords everywhere and adds markup of its own (as a prompt injection would)."""

    async def structured(
        self, system: str, user: str, schema: type[BaseModel], purpose: str, usage: Usage, **_: Any
    ) -> Any:
        if issubclass(schema, DraftFrame):
            return DraftFrame(
                meta_title=f"{SCRIPT} guide",
                meta_description=f"All about {IMG}, and everything a reader should know.",
                intro_markdown=f"{SCRIPT} is what this is about. <svg onload=alert(1)> " + PAD,
                conclusion_markdown="[Click](javascript:alert(1)) ![x](data:image/svg+xml;base64,AAAA) " + PAD,
                faq=[FaqItem(question=f"What is {IMG}?\n\n<script>x</script>", answer=f"It is {SCRIPT}.")],
            )
        return SectionText(section_markdown=f"Text about {IMG} and <a href='javascript:alert(1)'>this</a>. " + PAD)


BRIEF = {
    "title": f"{SCRIPT}: the complete guide",
    "primary_keyword": SCRIPT,
    "secondary_keywords": [IMG],
    "target_words": 300,
    "outline": [
        {"level": 2, "heading": f"Why {SCRIPT} matters"},
        {"level": 3, "heading": IMG},
        {"level": 2, "heading": f"Choosing {IMG}\n# injected heading"},
    ],
}


async def test_hostile_keywords_and_model_text_are_inert_in_the_draft() -> None:
    row = (await write_draft(HostileAi(), BRIEF, StageOptions(), Usage())).row  # type: ignore[arg-type]
    assert executable_markup(row["body_html"]) == []
    # body_markdown too, even for a renderer that lets raw HTML through
    assert executable_markup(markdown.markdown(row["body_markdown"], extensions=["extra"])) == []
    # the text is still there, as text
    assert "<h2>Why &lt;script&gt;alert(1)&lt;/script&gt; matters</h2>" in row["body_html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in row["body_html"]
    # a heading is one line: model text cannot open a block of its own
    assert (
        "<h1>" not in row["body_html"]
        and "## Choosing &lt;img src=x onerror=alert(1)> # injected heading" in (row["body_markdown"])
    )
    # plain-text fields stay plain text (escaped by whoever puts them into HTML)
    assert row["title"] == BRIEF["title"] and row["meta_title"].startswith(SCRIPT)


class RepeatingAi(HostileAi):
    """A model that asks one FAQ question twice (in another letter case): one entry, not a repeated section."""

    async def structured(
        self, system: str, user: str, schema: type[BaseModel], purpose: str, usage: Usage, **_: Any
    ) -> Any:
        reply = await super().structured(system, user, schema, purpose, usage)
        if isinstance(reply, DraftFrame):
            answer = "It depends on the grinder, the beans and how fine you grind them for the brew."
            reply.faq = [FaqItem(question="How fine should I grind?", answer=answer),
                         FaqItem(question="What grinder do I need?", answer=answer),
                         FaqItem(question="how FINE should I grind?", answer=answer)]  # fmt: skip
        return reply


async def test_a_faq_question_asked_twice_is_written_once() -> None:
    row = (await write_draft(RepeatingAi(), BRIEF, StageOptions(), Usage())).row  # type: ignore[arg-type]
    faq = row["body_markdown"].split("## FAQ", 1)[1]
    assert faq.lower().count("how fine should i grind?") == 1 and "What grinder do I need?" in faq
    assert "heading repeated" not in " ".join(row["quality_notes"])
