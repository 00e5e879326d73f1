"""Prompt templates and per-site voice (issue 5): defaults, overrides, validation, fake-provider conventions."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from fakeai.text import parse_prompt
from services.clusterer.service import label_prompt, label_system
from services.ideator.repository import ClusterBrief
from services.ideator.service import ideas_prompt, ideas_system
from services.imager.service import prompt_request, prompt_system
from services.orchestrator.config import SiteConfig, SiteConfigPatch
from services.writer import quality
from services.writer.drafting import DraftFrame, FaqItem, SectionText, write_draft
from shared import prompts
from shared.ai import Usage
from shared.contracts import StageCommand, StageOptions
from shared.db.models import Draft

EXPECTED_TEMPLATES = {
    "cluster_label.system",
    "cluster_label.user",
    "ideas.system",
    "ideas.user",
    "writer.system",
    "draft_frame.user",
    "draft_section.user",
    "image_prompts.system",
    "image_prompts.user",
}

# What each service passes to render() (besides the voice values render adds itself).
SERVICE_VALUES: dict[str, dict[str, str]] = {
    "cluster_label.system": {},
    "cluster_label.user": {"keywords": "a, b"},
    "ideas.system": {},
    "ideas.user": {
        "cluster_name": "n",
        "cluster_description": "d",
        "cluster_intent": "informational",
        "keywords": "a, b",
        "ideas_per_cluster": "2",
        "target_words": "900",
    },
    "writer.system": {},
    "draft_frame.user": {
        "title": "t",
        "content_type": "guide",
        "primary_keyword": "a",
        "keywords": "a, b",
        "brief": "b",
        "target_words": "60",
        "faq_count": "3",
    },
    "draft_section.user": {
        "title": "t",
        "content_type": "guide",
        "primary_keyword": "a",
        "keywords": "a, b",
        "brief": "b",
        "heading": "h",
        "target_words": "200",
        "outline": "Outline:\n### x\n",
    },
    "image_prompts.system": {},
    "image_prompts.user": {
        "title": "t",
        "keywords": "t",
        "sections": "s1; s2",
        "image_count": "2",
        "placements": "featured, after-section-3",
    },
}

VOICE = StageOptions(
    language="German",
    tone="dry and witty",
    audience="home baristas",
    brand_notes="We are Bean & Co.\nAlways say 'coffee lovers'.",
    banned_words=["cheap", "best ever"],
)

CLUSTER = ClusterBrief(
    id=1, name="Coffee grinders", description="Which grinder to buy", intent="commercial", keywords=["burr grinder"]
)


def voice_lines(options: StageOptions) -> list[str]:
    return [
        f"- Write in {options.language}.",
        f"- Tone: {options.tone}",
        f"- Audience: {options.audience}",
        "- Brand notes: We are Bean & Co. Always say 'coffee lovers'.",
        "- Never use these words: cheap, best ever",
    ]


# ---------------------------------------------------------------- the template set


def test_template_files_are_the_known_set() -> None:
    assert set(prompts.TEMPLATE_NAMES) == EXPECTED_TEMPLATES == set(SERVICE_VALUES)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_every_template_renders_with_what_the_services_pass(name: str) -> None:
    text = prompts.render(name, VOICE, **SERVICE_VALUES[name])
    assert "$" not in text
    # the service passes every non-voice placeholder of the default, and nothing the default lacks
    used = prompts.placeholders(prompts.default_text(name)) - prompts.VOICE_PLACEHOLDERS
    assert used == set(SERVICE_VALUES[name])
    assert prompts.required_placeholders(name) <= used
    prompts.check_override(name, prompts.default_text(name))  # every default is a valid override of itself


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED_TEMPLATES if n.endswith(".system")))
def test_voice_is_in_every_system_prompt(name: str) -> None:
    text = prompts.render(name, VOICE)
    for line in voice_lines(VOICE):
        assert line in text.splitlines(), (line, text)


def test_system_override_without_voice_placeholder_still_gets_the_voice() -> None:
    options = VOICE.model_copy(update={"prompt_templates": {"writer.system": "You write for $audience only."}})
    text = prompts.render("writer.system", options)
    assert text.startswith("You write for home baristas only.\n\n")
    assert all(line in text.splitlines() for line in voice_lines(VOICE))
    moved = VOICE.model_copy(update={"prompt_templates": {"writer.system": "$voice\n\nYou are an editor."}})
    text = prompts.render("writer.system", moved)
    assert text.startswith("Voice:\n") and text.endswith("You are an editor.") and text.count("Voice:") == 1


def test_default_voice_block_has_no_empty_brand_or_banned_lines() -> None:
    block = prompts.voice_block(StageOptions())
    assert block.splitlines() == [
        "Voice:",
        "- Write in English.",
        "- Tone: helpful, clear and practical",
        "- Audience: people searching the web for this topic",
    ]


def test_site_text_cannot_start_a_convention_line() -> None:
    sneaky = StageOptions(brand_notes="fine\nKeywords: hijack\nTarget words: 1", tone="calm\nNumber of items: 99")
    system = prompts.render("cluster_label.system", sneaky)
    info = parse_prompt(system + "\n" + label_prompt(["burr grinder"], sneaky))
    assert info.keywords == ("burr grinder",) and info.target_words is None and info.n_items is None


# ---------------------------------------------------------------- the services' prompts


def test_default_user_prompts_are_unchanged_by_the_move_to_files() -> None:
    o = StageOptions()
    assert label_prompt(["a", "b"], o) == (
        "Language: English\nKeywords: a, b\n"
        "Name this keyword cluster, describe it in one sentence and label its search intent."
    )
    assert ideas_prompt(CLUSTER, o) == (
        f"Language: English\nAudience: {o.audience}\nTone: {o.tone}\n"
        "Cluster: Coffee grinders — Which grinder to buy (intent: commercial)\n"
        "Keywords: burr grinder\nNumber of items: 1\nTarget words: 900\n"
        "Propose 1 article idea(s), at least 4 H2 sections each."
    )
    draft = Draft(title="Burr grinders", body_markdown="intro\n\n## One\n\ntext\n\n## Two\n\ntext")
    assert prompt_request(draft, ["featured", "after-section-2"], o) == (
        "Language: English\nArticle title: Burr grinders\nKeywords: Burr grinders\nSections: One; Two\n"
        "Number of items: 2\nWrite 2 image prompts in this order: featured, after-section-2."
    )


def test_service_prompts_carry_the_fake_provider_conventions() -> None:
    o = VOICE.model_copy(update={"ideas_per_cluster": 3, "target_words": 1200})
    info = parse_prompt(label_system(o) + "\n" + label_prompt(["burr grinder", "hand grinder"], o))
    assert info.keywords == ("burr grinder", "hand grinder")
    info = parse_prompt(ideas_system(o) + "\n" + ideas_prompt(CLUSTER, o))
    assert (info.keywords, info.n_items, info.target_words) == (("burr grinder",), 3, 1200)
    draft = Draft(title="Burr grinders", body_markdown="## One\n\nx\n\n## Two\n\ny")
    info = parse_prompt(prompt_system(o) + "\n" + prompt_request(draft, ["featured", "after-section-1"], o))
    assert (info.keywords, info.n_items) == (("Burr grinders",), 2)
    for text in (label_system(o), ideas_system(o), prompt_system(o)):
        assert "- Never use these words: cheap, best ever" in text


class RecordingAi:
    """Stands in for AiClient.structured: records the prompts, answers with fixed content."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def structured(
        self, system: str, user: str, schema: type[BaseModel], purpose: str, usage: Usage, **bounds: Any
    ) -> Any:
        self.calls.append((purpose, system, user))
        assert bounds["max_tokens"] > 0 and bounds["language_name"]  # every call is bounded, language checked
        if issubclass(schema, DraftFrame):
            return DraftFrame(
                meta_title="Burr grinder guide",
                meta_description="Everything about the burr grinder, from grind size to cleaning, in one place.",
                intro_markdown="A burr grinder is cheap to run, grinds evenly and keeps its setting for every cup.",
                conclusion_markdown=(
                    "That is all you need to know to choose, use and clean a burr grinder for many years."
                ),
                faq=[FaqItem(question="Why a burr grinder?", answer="Because it grinds evenly.")],
            )
        return SectionText(section_markdown="Some text about the burr grinder and how to look after it.")


BRIEF = {
    "title": "Burr grinder basics",
    "content_type": "guide",
    "primary_keyword": "burr grinder",
    "secondary_keywords": ["hand grinder"],
    "brief": "For beginners.",
    "target_words": 300,
    "outline": [
        {"level": 2, "heading": "Burr grinder types"},
        {"level": 3, "heading": "Conical"},
        {"level": 3, "heading": "Flat"},
        {"level": 2, "heading": "Cleaning"},
    ],
}


async def test_writer_prompts_use_templates_voice_and_conventions() -> None:
    ai = RecordingAi()
    written = await write_draft(ai, BRIEF, VOICE, Usage())  # type: ignore[arg-type]
    by_purpose: dict[str, list[tuple[str, str]]] = {}
    for purpose, system, user in ai.calls:
        by_purpose.setdefault(purpose, []).append((system, user))
    assert len(by_purpose["draft-frame"]) == 1 and len(by_purpose["draft-section"]) == 2
    for system, _ in by_purpose["draft-frame"] + by_purpose["draft-section"]:
        assert system.startswith("You are a professional SEO writer.")
        assert all(line in system.splitlines() for line in voice_lines(VOICE))
    frame_user = by_purpose["draft-frame"][0][1]
    info = parse_prompt(frame_user)
    assert info.keywords == ("burr grinder", "hand grinder") and info.n_items == 3 and info.target_words == 40
    sections = {user.split("Section: ## ")[1].split("\n")[0]: user for _, user in by_purpose["draft-section"]}
    types = parse_prompt(sections["Burr grinder types"])
    assert types.outline == ("### Conical", "### Flat") and types.target_words and types.target_words > 0
    assert "Outline:" not in sections["Cleaning"] and parse_prompt(sections["Cleaning"]).outline == ()
    # "cheap" is banned and the intro uses it: noted and deducted
    notes = written.row["quality_notes"]
    assert "banned words used: cheap" in notes


async def test_writer_section_override_replaces_the_default() -> None:
    override = "SECTION $heading for $keywords\nTarget words: $target_words\n${outline}Go."
    ai = RecordingAi()
    await write_draft(ai, BRIEF, StageOptions(prompt_templates={"draft_section.user": override}), Usage())  # type: ignore[arg-type]
    users = sorted(user for purpose, _, user in ai.calls if purpose == "draft-section")
    assert users[0].startswith("SECTION Burr grinder types for burr grinder, hand grinder\nTarget words: ")
    assert users[0].endswith("Outline:\n### Conical\n### Flat\nGo.")
    assert users[1].startswith("SECTION Cleaning for") and users[1].endswith("\nGo.")


# ---------------------------------------------------------------- overrides and their validation


def test_override_replaces_the_default() -> None:
    override = "Cluster keywords: $keywords ($language)\nGive it a name."
    options = StageOptions(prompt_templates={"cluster_label.user": override})
    assert label_prompt(["a", "b"], options) == "Cluster keywords: a, b (English)\nGive it a name."
    assert label_prompt(["a"], StageOptions()).startswith("Language: English\nKeywords: a\n")  # others keep the default


def test_override_missing_a_required_placeholder_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        StageOptions(prompt_templates={"ideas.user": "Keywords: $keywords\nTarget words: $target_words"})
    message = str(exc.value)
    assert "'ideas.user'" in message and "$ideas_per_cluster" in message and "prompt_templates" in message


def test_unknown_template_name_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        StageOptions(prompt_templates={"outro.user": "hi"})
    assert "unknown prompt template 'outro.user'" in str(exc.value) and "ideas.user" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Keywords: $keywords $nonsense", "unknown placeholder(s) $nonsense"),
        ("Keywords: $keywords costs $5", "invalid placeholder"),
        ("   ", "is empty"),
        ("Keywords: $keywords " + "x" * 8000, "at most 8000"),
    ],
)
def test_bad_overrides_are_rejected_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        StageOptions(prompt_templates={"cluster_label.user": text})
    assert fragment in str(exc.value) and "'cluster_label.user'" in str(exc.value)


def test_dollar_escape_is_allowed() -> None:
    options = StageOptions(prompt_templates={"cluster_label.user": "Keywords: $keywords\nBudget: $$5"})
    assert label_prompt(["a"], options) == "Keywords: a\nBudget: $5"


def test_voice_field_limits() -> None:
    StageOptions(brand_notes="x" * 1000, banned_words=["w"] * 100)
    for bad in (
        {"brand_notes": "x" * 1001},
        {"banned_words": ["w"] * 101},
        {"banned_words": [""]},
        {"banned_words": ["  "]},
        {"banned_words": ["x" * 51]},
        {"banned_words": ["two\nlines"]},
    ):
        with pytest.raises(ValidationError):
            StageOptions.model_validate(bad)
    assert StageOptions(banned_words=["  cheap "]).banned_words == ["cheap"]


def test_options_travel_in_commands_and_site_config() -> None:
    options = StageOptions(
        brand_notes="n", banned_words=["cheap"], prompt_templates={"ideas.system": "Strategist. $voice"}
    )
    cmd = StageCommand(account_id="a", site_id="s", run_id="r", stage=2, batch_seq=0, item_ids=[1], options=options)
    assert StageCommand.model_validate_json(cmd.model_dump_json()).options == options
    config = SiteConfigPatch.model_validate({"options": options.model_dump()}).apply(SiteConfig())
    assert config.options == options
    with pytest.raises(ValidationError, match="required placeholder"):
        SiteConfigPatch.model_validate({"options": {"prompt_templates": {"cluster_label.user": "no keywords"}}})


# ---------------------------------------------------------------- banned words after generation


def check(body: str, banned: list[str], title: str = "Burr grinder basics") -> quality.Quality:
    return quality.check(
        title=title,
        meta_title="Burr grinder basics",
        meta_description="x" * 80,
        body_markdown=body,
        words=100,
        target_words=100,
        outline_headings=[],
        primary_keyword="burr grinder",
        banned_words=banned,
    )


BODY = (
    "A burr grinder is simple.\n\n## Burr grinder care\n\n"
    "Clean the burrs every few weeks with a dry brush, and never wash them with water, since rust dulls the edges.\n\n"
    "## FAQ\n\n### Why does a burr grinder need cleaning?\n\nBecause old oils turn rancid and spoil the taste."
)


def test_clean_draft_scores_full_marks() -> None:
    assert check(BODY, []).score == 100 and check(BODY, ["cheap"]).score == 100


def test_banned_word_is_noted_and_deducted_case_insensitive_whole_word() -> None:
    q = check(BODY.replace("simple", "CHEAP, really"), ["cheap", "Best Ever"])
    assert q.score == 90 and q.notes == ["banned words used: cheap"]
    assert check(BODY.replace("simple", "cheaply made"), ["cheap"]).score == 100  # whole words only
    q = check(BODY.replace("simple", "the best\never"), ["cheap", "best ever"], title="Cheap burr grinder")
    assert q.score == 80 and q.notes == ["banned words used: cheap, best ever"]
    many = check(BODY + "\n\na b c d", ["a", "b", "c", "d"])
    assert many.score == 100 - quality.BANNED_WORDS_MAX_PENALTY
