"""Real model output, met item by item: every case is detected, named in the failure reason, and fails only
its own item; re-asks change the request. Against fakeai served on a port (its fault rules play the model)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field, SecretStr

from fakeai import FakeSettings
from fakeai.serve import RunningFake, serving
from services.writer.drafting import write_draft
from shared.ai import AiClient, AiError, FailureKind, Usage
from shared.contracts import StageOptions
from shared.settings import Settings
from shared.text import repetition_loop


class Piece(BaseModel):
    title: str = Field(max_length=120)
    body_markdown: str = Field(max_length=4000, description="The text")


def settings(fake: RunningFake, **extra: Any) -> Settings:
    base: dict[str, Any] = {"openai_base_url": fake.url, "openai_api_key": SecretStr("k"), "ai_max_attempts": 2}
    return Settings(**(base | extra))


def prompt(marker: str) -> str:
    return f"Keywords: {marker} espresso, coffee beans\nTarget words: 60\nWrite a short piece."


@pytest.fixture
async def fake() -> AsyncIterator[RunningFake]:
    async with serving() as running:
        yield running


async def ask(ai: AiClient, marker: str, usage: Usage) -> Piece | AiError:
    try:
        return await ai.structured("You write.", prompt(marker), Piece, "piece", usage, language_name="English")
    except AiError as exc:
        return exc


CASES = [
    ({"kind": "cut_off"}, FailureKind.CUT_OFF),
    ({"kind": "invalid_json"}, FailureKind.INVALID_JSON),
    ({"kind": "schema_violation"}, FailureKind.SCHEMA_VIOLATION),
    ({"kind": "empty"}, FailureKind.EMPTY),
    ({"kind": "refusal"}, FailureKind.REFUSAL),
    ({"kind": "refusal_text"}, FailureKind.REFUSAL),
    ({"kind": "wrong_language"}, FailureKind.WRONG_LANGUAGE),
    ({"kind": "phrase_loop"}, FailureKind.REPETITION),  # a loop, not "German": it is named before the language
    ({"kind": "not_supported"}, FailureKind.NOT_SUPPORTED),
    ({"kind": "unsupported_parameter", "param": "logit_bias"}, FailureKind.UNSUPPORTED_PARAMETER),
    ({"kind": "slow", "delay_ms": 1500}, FailureKind.TIMEOUT),
]


@pytest.mark.parametrize(("rule", "kind"), CASES, ids=[str(k) for _, k in CASES])
async def test_each_case_fails_only_its_item_with_a_named_reason(
    fake: RunningFake, rule: dict[str, Any], kind: FailureKind
) -> None:
    await fake.configure(faults=[{**rule, "if_prompt_contains": "item-b"}])
    # only the slow case needs a short timeout; the others must not time out on a loaded machine
    ai = AiClient(settings(fake, chat_timeout_seconds=0.6 if kind is FailureKind.TIMEOUT else 20))
    usages = {m: Usage() for m in ("item-a", "item-b", "item-c")}
    results = dict(zip(usages, await asyncio.gather(*(ask(ai, m, u) for m, u in usages.items())), strict=True))
    await ai.close()
    assert isinstance(results["item-a"], Piece) and isinstance(results["item-c"], Piece)
    failed = results["item-b"]
    assert isinstance(failed, AiError) and failed.kind is kind and failed.transient == (kind is FailureKind.TIMEOUT)
    # the activity line shows the first 200 characters of a reason: the call and the name come first
    assert failed.reason.startswith("piece: ") and kind.label in failed.reason[:200], failed.reason
    assert f"at 127.0.0.1:{fake.url.split(':')[2].split('/')[0]}" in failed.reason  # which provider
    records = usages["item-b"].records
    assert records and all(not r.ok for r in records) and records[-1].outcome == kind.value
    if kind in (FailureKind.CUT_OFF, FailureKind.INVALID_JSON, FailureKind.WRONG_LANGUAGE, FailureKind.REPETITION):
        assert all(r.completion_tokens > 0 for r in records)  # the tokens of failed tries are recorded
    if kind in (FailureKind.REFUSAL, FailureKind.NOT_SUPPORTED, FailureKind.UNSUPPORTED_PARAMETER):
        assert len(records) == 1 and records[0].attempts == 1  # final answers are not asked again
    if kind is FailureKind.TIMEOUT:
        assert "after 2 attempts" in failed.reason and "timeout 0.6 s" in failed.reason


async def last_user_messages(fake: RunningFake) -> list[str]:
    return [r["body"]["messages"][-1]["content"] for r in await fake.requests() if r["endpoint"] == "chat"]


async def test_a_cut_off_reply_is_asked_again_once_with_twice_the_budget(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "cut_off", "times": 1}])
    ai, usage = AiClient(settings(fake)), Usage()
    assert isinstance(await ask(ai, "x", usage), Piece)
    sent = [r["body"]["max_tokens"] for r in await fake.requests()]
    assert sent[1] == 2 * sent[0] and [r.outcome for r in usage.records] == ["cut_off", "ok"]
    assert usage.records[0].finish_reason == "length" and usage.records[0].max_tokens == sent[0]


async def test_a_model_that_never_stops_is_given_up_after_the_larger_budget(fake: RunningFake) -> None:
    # 20 tokens cannot hold the piece and 40 cannot either (the fake stops at max_tokens, as servers do)
    ai, usage = AiClient(settings(fake)), Usage()
    with pytest.raises(AiError, match=r"^piece: reply cut off by the token limit even at max_tokens=40 \(first 20\)"):
        await ai.structured("You write.", prompt("x"), Piece, "piece", usage, max_tokens=20)
    assert [(r.max_tokens, r.finish_reason, r.completion_tokens) for r in usage.records] == [
        (20, "length", 20),
        (40, "length", 40),
    ]


async def test_an_invalid_reply_gets_a_repair_request_quoting_the_error_and_the_fields(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "invalid_json", "times": 1}])
    ai, usage = AiClient(settings(fake)), Usage()
    assert isinstance(await ask(ai, "x", usage), Piece)
    first, second = await last_user_messages(fake)
    assert first.startswith("Keywords:") and '- "body_markdown": string, at most 4000 characters' in first
    assert "could not be used: invalid JSON" in second and '"title", "body_markdown"' in second
    assert usage.records[0].error and "invalid structured output" in usage.records[0].error


async def test_a_wrong_language_reply_is_asked_again_in_the_site_language(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "wrong_language", "times": 1}])
    ai, usage = AiClient(settings(fake)), Usage()
    assert isinstance(await ask(ai, "x", usage), Piece)
    second = (await last_user_messages(fake))[1]
    assert "was not written in English" in second and "German" in second
    assert usage.records[0].outcome == "wrong_language"


async def test_a_looping_reply_is_named_a_loop_and_asked_again_to_say_each_thing_once(fake: RunningFake) -> None:
    # SmolLM2's "Coffee Grinder, Coffee Grinder, …" read as German to the language check: the loop comes first
    await fake.configure(faults=[{"kind": "phrase_loop", "times": 1}])
    ai, usage = AiClient(settings(fake)), Usage()
    assert isinstance(await ask(ai, "x", usage), Piece)
    second = (await last_user_messages(fake))[1]
    assert "repeated itself over and over" in second and "Say each thing once" in second
    assert [r.outcome for r in usage.records] == ["repetition_loop", "ok"]
    assert usage.records[0].error and "the reply loops" in usage.records[0].error


async def test_transient_errors_are_retried_and_then_named(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "server_error"}])
    ai, usage = AiClient(settings(fake, ai_max_attempts=3)), Usage()
    failed = await ask(ai, "x", usage)
    assert isinstance(failed, AiError) and failed.transient
    assert failed.reason.startswith("piece: provider server error after 3 attempts [chat model gpt-4o-mini at")
    assert usage.records[0].attempts == 3


async def test_a_404_is_not_retried(fake: RunningFake) -> None:
    ai, usage = AiClient(settings(fake, openai_base_url=fake.root + "/nowhere", ai_max_attempts=4)), Usage()
    failed = await ask(ai, "x", usage)
    assert isinstance(failed, AiError) and failed.kind is FailureKind.NOT_FOUND and usage.records[0].attempts == 1


@pytest.mark.parametrize(
    ("knobs", "check"),
    [
        ({"reject_params": ["max_tokens"]}, lambda body: "max_completion_tokens" in body and "max_tokens" not in body),
        ({"reject_params": ["temperature"]}, lambda body: "temperature" not in body),
        ({"response_formats": ["json_object", "text"]}, lambda body: body["response_format"]["type"] == "json_object"),
        (
            {"reject_schema_keywords": ["maxLength"]},
            lambda body: "maxLength" not in json.dumps(body["response_format"]),
        ),
    ],
    ids=["max_tokens", "temperature", "json_mode_only", "maxLength"],
)
async def test_a_refused_parameter_is_named_left_out_once_and_remembered(
    fake: RunningFake, knobs: dict[str, Any], check: Any
) -> None:
    await fake.configure(**knobs)
    ai, usage = AiClient(settings(fake)), Usage()
    assert isinstance(await ask(ai, "x", usage), Piece)
    assert isinstance(await ask(ai, "y", usage), Piece)
    bodies = [r["body"] for r in await fake.requests()]
    assert len(bodies) == 3 and not check(bodies[0]) and check(bodies[1]) and check(bodies[2])
    assert usage.records[0].outcome == "unsupported_parameter" and "unsupported parameter" in (
        usage.records[0].error or ""
    )


async def test_no_response_format_and_a_fenced_reply_still_parse(fake: RunningFake) -> None:
    await fake.configure(response_formats=["text"], faults=[{"kind": "fenced"}])
    ai, usage = AiClient(settings(fake, chat_response_format="none")), Usage()
    result = await ask(ai, "x", usage)
    assert isinstance(result, Piece) and result.body_markdown and usage.records[-1].ok
    (request,) = await fake.requests()
    assert "response_format" not in request["body"] and "Shape: {" in request["body"]["messages"][-1]["content"]


async def test_default_budgets_fit_whole_drafts_without_cut_offs(fake: RunningFake) -> None:
    ai, usage = AiClient(settings(fake)), Usage()
    outline = [{"level": 2, "heading": f"Part {w}"} for w in ("one", "two", "three")]
    brief = {"title": "Espresso at home", "primary_keyword": "espresso", "outline": outline}
    for target in (300, 2500):
        written = await write_draft(ai, brief | {"target_words": target}, StageOptions(), usage)
        assert abs(written.words - target) <= 0.15 * target
    assert usage.records and all(r.ok and r.finish_reason == "stop" for r in usage.records)
    assert all(r.max_tokens and r.completion_tokens < r.max_tokens for r in usage.records)


async def test_a_budget_larger_than_the_context_has_room_for_is_shrunk_once() -> None:
    async with serving(FakeSettings(context_tokens=600)) as fake:
        ai, usage = AiClient(settings(fake)), Usage()
        result = await ai.structured("You write.", prompt("x"), Piece, "piece", usage, max_tokens=2000)
        assert isinstance(result, Piece)
        first, second = (r["body"]["max_tokens"] for r in await fake.requests())
        assert first == 2000 and 96 <= second < 600
        assert usage.records[0].outcome == "context_too_long" and usage.records[1].ok
        with pytest.raises(AiError, match=r"^piece: prompt too long for the model's context"):
            await ai.structured("You write.", prompt("x") * 60, Piece, "piece", Usage())


async def test_the_callers_own_check_is_re_asked_and_then_named(fake: RunningFake) -> None:
    ai, usage = AiClient(settings(fake)), Usage()
    seen: list[int] = []

    def short_once(piece: Piece) -> str | None:
        seen.append(len(piece.body_markdown.split()))
        return "the piece has 3 words, the target is 60" if len(seen) == 1 else None

    assert isinstance(await ai.structured("w", prompt("x"), Piece, "piece", usage, check=short_once), Piece)
    assert "missed the request: the piece has 3 words" in (await last_user_messages(fake))[1]
    with pytest.raises(AiError, match=r"^piece: invalid output after 3 attempts \(reply off target, "):
        await ai.structured("w", prompt("x"), Piece, "piece", Usage(), check=lambda _: "never right")


async def test_a_failing_section_fails_its_draft_naming_the_section(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "refusal", "if_prompt_contains": "Section: ## Part two"}])
    outline = [{"level": 2, "heading": f"Part {w}"} for w in ("one", "two", "three")]
    brief = {"title": "Espresso at home", "primary_keyword": "espresso", "outline": outline, "target_words": 600}
    with pytest.raises(AiError) as caught:
        await write_draft(AiClient(settings(fake)), brief, StageOptions(), Usage())
    assert caught.value.reason.startswith("section 'Part two': draft-section: the model refused [chat model")


async def test_a_soft_check_is_re_asked_but_its_last_reply_stands(fake: RunningFake) -> None:
    ai, usage = AiClient(settings(fake)), Usage()
    piece = await ai.structured("w", prompt("x"), Piece, "piece", usage, soft_check=lambda _: "it has a placeholder")
    assert isinstance(piece, Piece)  # the caller's own gate judges it
    assert [r.outcome for r in usage.records] == ["off_target", "off_target", "ok"]
    assert "missed the request: it has a placeholder" in (await last_user_messages(fake))[1]


async def test_a_loop_is_a_soft_problem_only_where_the_caller_says_its_gate_catches_loops(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "phrase_loop"}])
    ai = AiClient(settings(fake))
    hard, soft = Usage(), Usage()
    with pytest.raises(AiError, match="the reply loops"):
        await ai.structured("w", prompt("x"), Piece, "piece", hard)
    piece = await ai.structured("w", prompt("x"), Piece, "piece", soft, soft_loops=True)
    assert repetition_loop(piece.body_markdown)  # the last looping reply stands, for the caller's gate
    assert [r.outcome for r in soft.records] == [r.outcome for r in hard.records] == ["repetition_loop"] * 3


async def test_a_draft_whose_sections_loop_is_written_and_held_back_with_its_reasons(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "phrase_loop", "if_prompt_contains": "Section: ## "}])
    outline = [{"level": 2, "heading": f"Espresso {w}"} for w in ("grinders", "machines", "beans")]
    brief = {"title": "Espresso at home", "primary_keyword": "espresso", "outline": outline, "target_words": 600}
    draft = await write_draft(AiClient(settings(fake)), brief, StageOptions(), Usage())
    assert draft.row["quality_passed"] is False and draft.held is not None
    assert "repetition loop" in draft.held, draft.held


async def test_a_draft_with_placeholder_sections_is_written_and_held_back_with_its_reasons(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "placeholder", "if_prompt_contains": "Section: ## "}])
    outline = [{"level": 2, "heading": f"Espresso {w}"} for w in ("grinders", "machines", "beans")]
    brief = {"title": "Espresso at home", "primary_keyword": "espresso", "outline": outline, "target_words": 600}
    usage = Usage()
    draft = await write_draft(AiClient(settings(fake)), brief, StageOptions(), usage)
    assert draft.row["quality_passed"] is False and draft.held is not None
    assert draft.held.startswith("quality gate held the draft back (score ")
    assert "placeholders or template leftovers" in draft.held and "LARGE_30" in draft.held
    sections = [r for r in usage.records if r.purpose == "draft-section"]
    assert len(sections) == 9 and sum(r.outcome == "off_target" for r in sections) == 6  # 3 asks each


async def test_a_clean_draft_passes_the_gate(fake: RunningFake) -> None:
    outline = [{"level": 2, "heading": f"Espresso {w}"} for w in ("grinders", "machines", "beans")]
    brief = {"title": "Espresso at home", "primary_keyword": "espresso", "outline": outline, "target_words": 600}
    draft = await write_draft(AiClient(settings(fake)), brief, StageOptions(), Usage())
    assert draft.row["quality_passed"] is True and draft.held is None, draft.row["quality_notes"]


async def test_a_timed_out_attempt_is_re_sent_with_twice_the_timeout_and_the_client_keeps_it(
    fake: RunningFake,
) -> None:
    # a server that needs 1 s: 0.6 s cannot do, the same 0.6 s again could not either; 1.2 s can
    await fake.configure(faults=[{"kind": "slow", "delay_ms": 1000}])
    ai, usage = AiClient(settings(fake, chat_timeout_seconds=0.6)), Usage()
    assert isinstance(await ask(ai, "x", usage), Piece)
    assert [(r.outcome, r.attempts) for r in usage.records] == [("ok", 2)]
    later = Usage()
    assert isinstance(await ask(ai, "y", later), Piece)
    assert later.records[0].attempts == 1  # the grown timeout stays for the next calls
    await ai.close()
