"""The AI client's configuration rules, without any network."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel, Field, SecretStr

from services.writer.drafting import DraftFrame, SectionText, section_budget
from shared.ai import AiClient, FailureKind
from shared.ai import schema as ai_schema
from shared.ai.errors import classify
from shared.settings import Settings


def test_missing_provider_fails_with_the_fix_in_the_message() -> None:
    client = AiClient(Settings(openai_api_key=SecretStr(""), openai_base_url=None))
    with pytest.raises(RuntimeError, match="set OPENAI_API_KEY"):
        client.check_configured()


def test_a_local_compatible_server_needs_no_key_and_the_key_never_shows() -> None:
    AiClient(Settings(openai_api_key=SecretStr(""), openai_base_url="http://127.0.0.1:9/v1")).check_configured()
    settings = Settings(openai_api_key=SecretStr("sk-secret-value"))
    assert "sk-secret-value" not in repr(settings) and "sk-secret-value" not in str(settings.model_dump())


def test_a_whole_failed_batch_still_fits_one_kafka_record() -> None:
    from shared.contracts import ItemFailure, ResultStatus, Stage, StageResult
    from shared.worker import short

    failures = [short(ItemFailure(item_id=i, reason="<html>" + "x" * 5000)) for i in range(1000)]
    result = StageResult(
        command_id="c" * 32,
        account_id="a",
        site_id="s",
        run_id="r",
        stage=Stage.DRAFTS,
        batch_seq=0,
        status=ResultStatus.FAILED,
        items_in=1000,
        items_processed=0,
        items_created=0,
        failures=failures,
    )
    assert len(result.model_dump_json()) < 1_000_000 and failures[0].reason.endswith("...")


# ---------------------------------------------------------------- pure parts of the client


def status_error(status: int, message: str, param: str | None = None, code: str | None = None) -> openai.APIStatusError:
    response = httpx.Response(status, request=httpx.Request("POST", "http://x/v1/chat/completions"))
    body = {"message": message, "param": param, "code": code}
    return openai.APIStatusError(message, response=response, body=body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "message", "param", "code", "kind", "named"),
    [
        (400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
              "instead.", "max_tokens", "unsupported_parameter", FailureKind.UNSUPPORTED_PARAMETER, "max_tokens"),
        (400, "Invalid schema for response_format 'X': In context=('properties', 'name'), 'maxLength' is not "
              "permitted.", "response_format", None, FailureKind.UNSUPPORTED_PARAMETER, "maxLength"),
        (400, "[{'type': 'extra_forbidden', 'loc': ('body', 'dimensions'), 'msg': 'Extra inputs are not permitted'}]",
         None, None, FailureKind.UNSUPPORTED_PARAMETER, "dimensions"),
        (400, 'response_format type must be one of "text" or "json_object", but got: json_schema', None, None,
         FailureKind.UNSUPPORTED_PARAMETER, "response_format"),
        (400, "JSON schema conversion failed: unsupported pattern", None, None, FailureKind.UNSUPPORTED_PARAMETER,
         "json_schema"),
        (400, "This model's maximum context length is 4096 tokens", None, "context_length_exceeded",
         FailureKind.CONTEXT_TOO_LONG, None),
        (400, "the request exceeds the available context size, try increasing it", None, None,
         FailureKind.CONTEXT_TOO_LONG, None),
        (400, "something else is wrong", None, None, FailureKind.BAD_REQUEST, None),
        (401, "bad key", None, None, FailureKind.AUTH, None),
        (404, "model 'x' not found", None, None, FailureKind.NOT_FOUND, None),
        (422, "unprocessable", None, None, FailureKind.BAD_REQUEST, None),
        (429, "You exceeded your current quota", None, "insufficient_quota", FailureKind.QUOTA, None),
        (429, "slow down", None, None, FailureKind.RATE_LIMITED, None),
        (501, "Not Implemented", None, None, FailureKind.NOT_SUPPORTED, None),
        (503, "overloaded", None, None, FailureKind.SERVER_ERROR, None),
    ],
)  # fmt: skip
def test_provider_errors_are_classified_and_only_transient_ones_retried(
    status: int, message: str, param: str | None, code: str | None, kind: FailureKind, named: str | None
) -> None:
    sent = {"max_tokens", "dimensions", "response_format", "json_schema"}
    failure = classify(status_error(status, message, param, code), sent)
    assert failure.kind is kind and failure.parameter == named
    assert failure.transient == (status in (429, 503) and code != "insufficient_quota")


class Reply(BaseModel):
    title: str = Field(max_length=20)
    tags: list[str] = Field(max_length=2)


@pytest.mark.parametrize(
    "text",
    [
        '{"title": "Tea", "tags": ["a"]}',
        'Sure! Here it is:\n```json\n{"title": "Tea", "tags": ["a"]}\n```\nEnjoy.',
        '<think>The user wants JSON.</think>\n{"title": "Tea", "tags": ["a"]}',
        'Here you go: {"title": "Tea", "tags": ["a"]} - hope that helps',
    ],
)
def test_json_is_found_in_what_models_really_write(text: str) -> None:
    assert ai_schema.validate(Reply, ai_schema.extract_json(text)) == Reply(title="Tea", tags=["a"])


def test_invalid_and_schema_violating_replies_are_named() -> None:
    with pytest.raises(ai_schema.ReplyProblem) as bad:
        ai_schema.extract_json('{"title": "Tea", "tags": [')
    assert bad.value.kind is FailureKind.INVALID_JSON and "line 1" in bad.value.detail
    with pytest.raises(ai_schema.ReplyProblem) as wrong:
        ai_schema.validate(Reply, {"tags": "x"})
    assert wrong.value.kind is FailureKind.SCHEMA_VIOLATION and "title: Field required" in wrong.value.detail


def test_over_long_values_are_clipped_not_refused() -> None:
    reply = ai_schema.validate(Reply, {"title": "A rather long title for tea lovers", "tags": ["a", "b", "c"]})
    assert reply.title == "A rather long title" and reply.tags == ["a", "b"]


def test_the_schema_as_prompt_text_and_as_sent() -> None:
    text = ai_schema.describe(DraftFrame)
    assert '- "meta_title": string, 10-100 characters. At most 60 characters' in text
    assert '- "faq": list of 1 to 6 objects, each with:' in text and '  - "question": string, 10-150 characters' in text
    assert text.splitlines()[-1].startswith('Shape: {"meta_title": "...",')
    sent = json.dumps(ai_schema.strict(SectionText))
    assert "maxLength" not in sent  # prose is bounded by max_tokens, not by a huge grammar
    assert '"maxLength": 100' in json.dumps(ai_schema.strict(DraftFrame))
    assert '"maxLength"' not in json.dumps(ai_schema.strict(DraftFrame, ai_schema.LENGTH_KEYWORDS))


def test_section_budget_follows_the_words() -> None:
    assert section_budget(300, 0) == 611 and section_budget(300, 2) == 643 and section_budget(1000, 0) > 1800


def test_language_names_and_the_mismatch_check() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fakeai.faults import german
    from shared.ai import language

    assert [language.language_code(n) for n in ("English", "Deutsch", "pt-BR", "Español", "Qwxzzy")] == [
        "en",
        "de",
        "pt",
        "es",
        None,
    ]
    english = {"body": "Most readers looking into coffee grinders want a practical plan they can act on today, "
                       "and a careful comparison of burr sizes helps them decide."}  # fmt: skip
    assert language.mismatch(english, "English") is None
    assert language.mismatch({"title": "Kaffee"}, "English") is None  # too short to judge
    verdict = language.mismatch({"body": german(40)}, "English")
    assert verdict and verdict.startswith("it reads as German")
    assert language.mismatch({"body": german(40)}, "German") is None
    assert language.mismatch({"body": german(40)}, "Klingon") is None  # langcodes knows it, the detector does not
    with ThreadPoolExecutor(8) as pool:  # checks run in threads: the first use must not race
        assert set(pool.map(lambda _: language.mismatch(english, "English"), range(16))) == {None}
    # Varieties the detector tells apart but a site does not: they count as the site's language.
    assert {"arz", "ary"} <= language._close("ar") and "pcm" in language._close("en") and "ms" in language._close("id")
    assert "no" in language._close(language.language_code("Norwegian Bokmål") or "")
    assert "en" not in language._close("de") and "hr" not in language._close("sr") and language._close("tlh") == set()


def test_a_long_reply_is_judged_on_three_runs_of_its_words_and_a_midway_drift_is_still_caught() -> None:
    from fakeai.faults import german
    from shared.ai import language

    words = [f"w{i}" for i in range(1000)]
    picked = language.judged(words)
    run = language.JUDGED_WORDS // 3
    assert len(picked) == 3 * run and picked[:run] == words[:run] and picked[-run:] == words[-run:]
    assert picked[run] == words[(1000 - run) // 2]  # the middle run
    assert language.judged(words[:50]) == words[:50]  # a short reply whole
    english = ("Trail running shoes need grip on wet rock and enough cushioning for long descents. " * 80).strip()
    assert len(english.split()) > 4 * language.JUDGED_WORDS and language.mismatch({"body": english}, "English") is None
    # English for its first third, then the model switches to German: the middle and end runs read German
    drifted = english[: len(english) // 3] + " " + german(800)
    verdict = language.mismatch({"body": drifted}, "English")
    assert verdict and verdict.startswith("it reads as German")


def test_schemas_sent_are_bounded_to_what_was_asked() -> None:
    # Asked for one idea, a small model goes on proposing more until max_tokens cuts it off (seen with SmolLM2):
    # the schema sent closes the list at the count asked for, and the sections and frame at their word share.
    from services.ideator.service import idea_set
    from services.writer.drafting import frame_model, section_model

    ideas = ai_schema.strict(idea_set(1))
    assert ideas["properties"]["ideas"]["maxItems"] == 1 and idea_set(1) is idea_set(1)
    section = ai_schema.strict(section_model(80, 2))["properties"]["section_markdown"]
    assert section["maxLength"] == 80 * 10 + 2 * 80
    frame = ai_schema.strict(frame_model(40))
    assert frame["properties"]["intro_markdown"]["maxLength"] == 400 and frame["properties"]["faq"]["maxItems"] == 3
    assert "maxLength" not in ai_schema.strict(section_model(400, 0))["properties"]["section_markdown"]  # long prose
