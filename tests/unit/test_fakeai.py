"""The fake OpenAI server, driven through the real ``openai`` SDK in-process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
import zlib
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, cast

import httpx
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import openai
import pydantic
import pytest
from openai.lib._pydantic import to_strict_json_schema
from PIL import Image
from pydantic import BaseModel, Field, HttpUrl

from fakeai import FakeSettings, create_app
from fakeai.images import _adler32_combine, _banded_png
from fakeai.structured import generate
from fakeai.text import parse_prompt, word_count

# --- schemas shaped like the services' ----------------------------------------------


class SearchIntent(StrEnum):
    informational = "informational"
    commercial = "commercial"
    transactional = "transactional"
    navigational = "navigational"


class Tone(StrEnum):
    friendly = "friendly"
    expert = "expert"
    playful = "playful"


class Section(BaseModel):
    heading: str = Field(max_length=80)
    level: int = Field(ge=2, le=3)
    body: str
    key_points: list[str] = Field(min_length=2, max_length=4)


class ImageSpec(BaseModel):
    prompt: str
    alt_text: str = Field(max_length=125)
    placement: str
    style: Literal["photo", "illustration"]


class ArticleDraft(BaseModel):
    title: str = Field(max_length=60)
    meta_title: str = Field(max_length=60)
    meta_description: str = Field(min_length=50, max_length=155)
    slug: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    primary_keyword: str
    secondary_keywords: list[str]
    search_intent: SearchIntent
    tone: Tone
    markdown: str
    sections: list[Section] = Field(max_length=6)
    images: list[ImageSpec] = Field(min_length=1, max_length=3)
    word_count: int = Field(ge=300, le=5000)
    reading_time_minutes: int = Field(gt=0, lt=60)
    summary: str | None = None


class Cluster(BaseModel):
    name: str = Field(max_length=40)
    keywords: list[str] = Field(min_length=1)
    intent: SearchIntent
    priority: float = Field(ge=0, le=1)


class ClusterPlan(BaseModel):
    clusters: list[Cluster]
    reasoning: str


class Misc(BaseModel):
    """Types the strict mode refuses (dicts, tuples, sets, recursion), sent with strict=false."""

    scores: dict[str, int]
    pair: tuple[str, int]
    tones: set[Tone]
    published_at: datetime
    url: HttpUrl
    ratio: float = Field(gt=0, lt=1)
    count: int = Field(multiple_of=5, ge=1, le=50)
    kind: Literal["misc"]
    child: Misc | None = None


KEYWORDS = ["best running shoes", "trail running shoes", "running shoes for flat feet"]
OUTLINE = ["## Why the right shoe matters", "### Cushioning and drop", "## How to choose", "## Final thoughts"]
ARTICLE_PROMPT = "\n".join(
    [
        "Write an SEO article draft.",
        f"Keywords: {', '.join(KEYWORDS)}",
        "Target words: 1200",
        "Outline:",
        *OUTLINE,
        "",
        "Number of items: 4",
    ]
)


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://fake") as client:
        yield client


def sdk(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    # The SDK is typed for httpx2 but accepts a legacy httpx client at runtime.
    return openai.AsyncOpenAI(base_url="http://fake/v1", api_key="x", http_client=cast(Any, http), max_retries=0)


def schema_format(model: type[BaseModel], *, strict: bool = True) -> dict[str, Any]:
    schema = to_strict_json_schema(model) if strict else model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema, "strict": strict}}


async def chat(http: httpx.AsyncClient, prompt: str, response_format: dict[str, Any] | None = None) -> str:
    extra: dict[str, Any] = {"response_format": response_format} if response_format else {}
    result = await sdk(http).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], **extra
    )
    assert result.choices[0].finish_reason == "stop"
    return result.choices[0].message.content or ""


async def configure(http: httpx.AsyncClient, **knobs: Any) -> None:
    response = await http.post("/_fake/config", json=knobs)
    assert response.status_code == 200, response.text


# --- chat: structured output ------------------------------------------------------------


@pytest.mark.parametrize("model", [ArticleDraft, ClusterPlan, Section, ImageSpec])
async def test_structured_output_validates_and_parses(http: httpx.AsyncClient, model: type[BaseModel]) -> None:
    fmt = schema_format(model)
    content = await chat(http, ARTICLE_PROMPT, fmt)
    doc = json.loads(content)
    jsonschema.validate(doc, fmt["json_schema"]["schema"])
    jsonschema.validate(doc, model.model_json_schema())
    model.model_validate_json(content)

    parsed = await sdk(http).chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": ARTICLE_PROMPT}], response_format=model
    )
    assert parsed.choices[0].message.parsed == model.model_validate_json(content)


async def test_non_strict_schema_with_dicts_tuples_sets_and_recursion(http: httpx.AsyncClient) -> None:
    fmt = schema_format(Misc, strict=False)
    content = await chat(http, "Keywords: espresso grinder", fmt)
    jsonschema.validate(json.loads(content), Misc.model_json_schema())
    misc = Misc.model_validate_json(content)
    assert misc.kind == "misc" and misc.count % 5 == 0 and 0 < misc.ratio < 1
    assert misc.child is None  # the recursive optional stops at the first recursion


def test_generator_handles_schema_features_directly() -> None:
    schema = {
        "type": "object",
        "properties": {
            "plan": {"$ref": "#/$defs/Plan"},
            "level": {"type": "integer", "minimum": 2, "maximum": 3},
            "note": {"type": ["string", "null"], "minLength": 30, "maxLength": 40},
            "flags": {"type": "array", "items": {"type": "boolean"}, "minItems": 5},
            "fixed": {"const": 42},
            "choice": {"oneOf": [{"type": "null"}, {"enum": ["x", "y"]}]},
        },
        "required": ["plan", "level", "note", "flags", "fixed", "choice"],
        "additionalProperties": False,
        "$defs": {
            "Plan": {
                "allOf": [
                    {"type": "object", "properties": {"steps": {"type": "array", "items": {"type": "string"}}}},
                    {"properties": {"budget": {"type": "number", "exclusiveMinimum": 10, "maximum": 20}}},
                ],
                "required": ["steps", "budget"],
            }
        },
    }
    doc = generate(schema, parse_prompt("Keywords: garden tools\nNumber of items: 2"))
    jsonschema.validate(doc, schema)
    assert len(doc["plan"]["steps"]) == 3  # nested arrays keep the default; only top-level ones follow N
    assert len(doc["flags"]) == 5 and doc["fixed"] == 42 and doc["choice"] in ("x", "y")


async def test_article_fields_follow_prompt_conventions(http: httpx.AsyncClient) -> None:
    article = ArticleDraft.model_validate_json(await chat(http, ARTICLE_PROMPT, schema_format(ArticleDraft)))
    assert article.primary_keyword == KEYWORDS[0]
    assert set(article.secondary_keywords) <= set(KEYWORDS[1:]) and article.secondary_keywords
    assert article.slug == "best-running-shoes"
    assert "Best Running Shoes" in article.title
    assert any(k in article.meta_description for k in KEYWORDS)
    assert article.search_intent is SearchIntent.commercial  # "best" is a commercial cue
    assert article.word_count == 1200
    assert len(article.sections) == 4 and len(article.images) == 3  # Number of items, clamped by maxItems
    assert [s.heading for s in article.sections] == [h.lstrip("# ") for h in OUTLINE]
    assert [s.level for s in article.sections] == [2, 3, 2, 2]
    assert [i.placement for i in article.images] == ["featured", "after-section-1", "after-section-2"]
    for section in article.sections:
        assert abs(word_count(section.body) - 1200) <= 60 and "#" not in section.body


async def test_target_words_and_outline_in_markdown(http: httpx.AsyncClient) -> None:
    markdown = ArticleDraft.model_validate_json(await chat(http, ARTICLE_PROMPT, schema_format(ArticleDraft))).markdown
    assert abs(word_count(markdown) - 1200) <= 60
    lines = markdown.splitlines()
    positions = [lines.index(heading) for heading in OUTLINE]  # verbatim, each on its own line
    assert positions == sorted(positions)
    assert not [line for line in lines if line.startswith("#") and line not in OUTLINE]
    between = lines[positions[0] + 1 : positions[1]]
    assert sum(len(line.split()) for line in between) > 100  # prose under every heading

    no_outline = "Keywords: sourdough starter\nTarget words: 500"
    plain = ArticleDraft.model_validate_json(await chat(http, no_outline, schema_format(ArticleDraft))).markdown
    assert abs(word_count(plain) - 500) <= 25 and "#" not in plain and "\n\n" in plain


async def test_same_request_same_answer(http: httpx.AsyncClient) -> None:
    client = sdk(http)
    messages: list[Any] = [
        {"role": "system", "content": "You write SEO drafts."},
        {"role": "user", "content": ARTICLE_PROMPT},
    ]
    fmt: Any = schema_format(ArticleDraft)
    first = await client.chat.completions.create(model="m", messages=messages, response_format=fmt)
    second = await client.chat.completions.create(model="m", messages=messages, response_format=fmt)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.id == second.id
    other = await chat(http, ARTICLE_PROMPT.replace("best running shoes", "cheap running shoes"), fmt)
    assert other != first.choices[0].message.content
    usage = first.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize(
    ("keyword", "intent"),
    [
        ("buy running shoes online", "transactional"),
        ("nike vs adidas", "commercial"),
        ("strava login", "navigational"),
        ("how to lace running shoes", "informational"),
    ],
)
async def test_search_intent_enum_uses_keyword_cues(http: httpx.AsyncClient, keyword: str, intent: str) -> None:
    prompt = f"Compare and classify the best options.\nKeywords: {keyword}"
    plan = ClusterPlan.model_validate_json(await chat(http, prompt, schema_format(ClusterPlan)))
    assert {c.intent.value for c in plan.clusters} == {intent}
    assert all(c.keywords == [keyword] for c in plan.clusters)


async def test_clusters_partition_the_keyword_list(http: httpx.AsyncClient) -> None:
    keywords = ["buy trail shoes", "best trail shoes", "trail shoes near me", "clean trail shoes", "trail shoes"]
    prompt = f"Cluster these keywords.\nKeywords: {', '.join(keywords)}\nNumber of items: 2"
    plan = ClusterPlan.model_validate_json(await chat(http, prompt, schema_format(ClusterPlan)))
    assigned = [k for c in plan.clusters for k in c.keywords]
    assert len(plan.clusters) == 2 and sorted(assigned) == sorted(keywords)
    assert [c.name for c in plan.clusters] == ["Buy Trail Shoes", "Best Trail Shoes"]
    assert [c.intent for c in plan.clusters] == [SearchIntent.transactional, SearchIntent.commercial]


async def test_keywords_fall_back_to_frequent_words(http: httpx.AsyncClient) -> None:
    prompt = "Plan content about compost. Compost bins, compost tea and worm compost for gardens."
    plan = ClusterPlan.model_validate_json(await chat(http, prompt, schema_format(ClusterPlan)))
    assert plan.clusters[0].keywords[0] == "compost"
    assert all(len(c.name) <= 40 for c in plan.clusters)


async def test_json_object_and_plain_prose(http: httpx.AsyncClient) -> None:
    doc = json.loads(await chat(http, "Keywords: tea, matcha", {"type": "json_object"}))
    assert doc["topic"] == "tea" and doc["keywords"] == ["tea", "matcha"]
    prose = await chat(http, "Keywords: tea\nTarget words: 300")
    assert abs(word_count(prose) - 300) <= 15 and "tea" in prose


# --- embeddings ---------------------------------------------------------------------------


async def test_embeddings_float_and_base64_agree_and_rank_lexically(http: httpx.AsyncClient) -> None:
    texts = ["best running shoes", "running shoes best deals", "mortgage rates today"]
    client = sdk(http)
    default = await client.embeddings.create(model="text-embedding-3-small", input=texts)  # SDK asks for base64
    floats = await client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    raw = await http.post("/v1/embeddings", json={"model": "e", "input": texts, "encoding_format": "base64"})
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw.json()["data"]]

    a = np.array([d.embedding for d in default.data])
    b = np.array([d.embedding for d in floats.data])
    assert a.shape == (3, 256)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.array(decoded))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    similarity = a @ a.T
    assert similarity[0, 1] > 0.6
    assert similarity[0, 2] < 0.2
    assert default.usage.prompt_tokens == sum(-(-len(t) // 4) for t in texts)

    single = await client.embeddings.create(model="e", input="best running shoes", dimensions=64)
    assert len(single.data[0].embedding) == 64


async def test_embeddings_batch_of_2048_comes_back_whole_and_in_order(http: httpx.AsyncClient) -> None:
    # (its speed is a benchmark's business: bench/, not a timed unit test)
    texts = [f"keyword {i} running shoes size {i % 13} for trail and road" for i in range(2048)]
    result = await sdk(http).embeddings.create(model="e", input=texts)
    assert len(result.data) == 2048 and [d.index for d in result.data] == list(range(2048))


@pytest.mark.parametrize(
    "body",
    [
        {"model": "e", "input": ["x"] * 2049},
        {"model": "e", "input": "x" * 8193},
        {"model": "e", "input": ""},
        {"model": "e", "input": []},
        {"model": "e", "input": "ok", "dimensions": 0},
        {"model": "e", "input": "ok", "encoding_format": "int8"},
        {"input": "no model"},
    ],
)
async def test_embeddings_bad_input_is_openai_400(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_embeddings_bad_input_raises_in_sdk(http: httpx.AsyncClient) -> None:
    with pytest.raises(openai.BadRequestError, match="8192"):
        await sdk(http).embeddings.create(model="e", input=["fine", "x" * 9000])


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"), [("256x256", (256, 256)), ("1024x1536", (1024, 1536)), ("auto", (1024, 1024))]
)
async def test_images_are_real_pngs_of_requested_size(
    http: httpx.AsyncClient, size: Any, expected: tuple[int, int]
) -> None:
    client = sdk(http)
    result = await client.images.generate(model="gpt-image-1", prompt="trail running shoes on a rock", size=size, n=2)
    assert result.data is not None and len(result.data) == 2
    blobs = [base64.b64decode(d.b64_json or "") for d in result.data]
    for blob in blobs:
        image = Image.open(io.BytesIO(blob))
        assert image.format == "PNG" and image.size == expected
    assert blobs[0] != blobs[1]
    assert result.data[0].revised_prompt and result.usage is not None and result.usage.output_tokens > 0
    again = await client.images.generate(model="gpt-image-1", prompt="trail running shoes on a rock", size=size, n=1)
    assert again.data is not None and base64.b64decode(again.data[0].b64_json or "") == blobs[0]


@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (1024, 1792), (256, 256), (100, 37)])
def test_hand_encoded_png_decodes_to_the_banded_scene(width: int, height: int) -> None:
    """The fake's own PNG encoder, read back by Pillow's decoder: each row is the small scene's row (scaled
    across) that its band comes from, every band's rows alike."""
    rng = np.random.default_rng(7)
    small = Image.fromarray(rng.integers(0, 256, (max(height // 16, 8), max(width // 16, 8), 3), np.uint8), "RGB")
    png = _banded_png(small, width, height)
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.format == "PNG" and decoded.size == (width, height) and decoded.mode == "RGB"
        pixels = np.asarray(decoded)
    across = np.asarray(small.resize((width, small.height), Image.Resampling.BILINEAR))
    expected = across[np.minimum(np.arange(height) * small.height // height, small.height - 1)]
    assert np.array_equal(pixels, expected)
    # The spliced zlib stream is whole: zlib itself checks its end and the adler-32 the encoder combined.
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == height * (1 + width * 3)


@pytest.mark.parametrize("second_len", [0, 1, 5552, 65521, 65522, 3_000_000])
def test_adler32_combine_matches_zlib(second_len: int) -> None:
    rng = np.random.default_rng(second_len)
    first, second = rng.bytes(97), rng.bytes(second_len)
    combined = _adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


@pytest.mark.parametrize("bad", [{"size": "100x100"}, {"n": 5}, {"quality": "ultra"}, {"prompt": ""}])
async def test_images_bad_input_is_400(http: httpx.AsyncClient, bad: dict[str, Any]) -> None:
    body = {"model": "gpt-image-1", "prompt": "a shoe", **bad}
    response = await http.post("/v1/images/generations", json=body)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


# --- fault injection ----------------------------------------------------------------------


async def test_error_rate_raises_sdk_errors(http: httpx.AsyncClient) -> None:
    await configure(http, error_rate=1.0, seed=7)
    seen: set[type[Exception]] = set()
    for _ in range(20):
        with pytest.raises((openai.RateLimitError, openai.InternalServerError)) as caught:
            await chat(http, "Keywords: tea")
        seen.add(type(caught.value))
    assert seen == {openai.RateLimitError, openai.InternalServerError}
    with pytest.raises((openai.RateLimitError, openai.InternalServerError)):
        await sdk(http).embeddings.create(model="e", input="tea")
    stats = (await http.get("/_fake/stats")).json()
    assert stats["errors_injected"] == 21 and stats["chat"] == 20

    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    responses = [await http.post("/v1/chat/completions", json=body) for _ in range(10)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and all(r.headers["Retry-After"] == "0" and "error" in r.json() for r in limited)


async def test_error_rate_is_reproducible_with_seed(http: httpx.AsyncClient) -> None:
    async def outcomes() -> list[int]:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        return [(await http.post("/v1/chat/completions", json=body)).status_code for _ in range(30)]

    await configure(http, error_rate=0.5, seed=3)
    first = await outcomes()
    await http.post("/_fake/reset")
    assert await outcomes() == first
    assert {200, 429, 500} <= set(first)


async def test_error_if_prompt_contains_targets_one_request(http: httpx.AsyncClient) -> None:
    await configure(http, error_if_prompt_contains="EXPLODE")
    with pytest.raises(openai.InternalServerError):
        await chat(http, "Keywords: tea\nEXPLODE")
    with pytest.raises(openai.InternalServerError):
        await sdk(http).images.generate(model="gpt-image-1", prompt="EXPLODE", size="256x256")
    assert await chat(http, "Keywords: tea")
    await configure(http, error_if_prompt_contains=None)
    assert await chat(http, "Keywords: tea\nEXPLODE")


async def test_malformed_if_prompt_contains_breaks_validation(http: httpx.AsyncClient) -> None:
    await configure(http, malformed_if_prompt_contains="GARBLE")
    fmt = schema_format(ArticleDraft)
    broken = [await chat(http, f"{ARTICLE_PROMPT}\nGARBLE {i}", fmt) for i in range(6)]
    for content in broken:
        with pytest.raises(pydantic.ValidationError):
            ArticleDraft.model_validate_json(content)
    kinds = {"truncated" if not _parses(c) else "missing-field" for c in broken}
    assert kinds == {"truncated", "missing-field"}
    ArticleDraft.model_validate_json(await chat(http, ARTICLE_PROMPT, fmt))
    with pytest.raises(pydantic.ValidationError):
        await sdk(http).chat.completions.parse(
            model="m", messages=[{"role": "user", "content": "GARBLE"}], response_format=ArticleDraft
        )
    assert (await http.get("/_fake/stats")).json()["malformed_injected"] == 7


def _parses(content: str) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return False
    return True


async def test_malformed_rate_only_hits_json_replies(http: httpx.AsyncClient) -> None:
    await configure(http, malformed_rate=1.0)
    with pytest.raises(pydantic.ValidationError):
        ClusterPlan.model_validate_json(await chat(http, "Keywords: tea", schema_format(ClusterPlan)))
    assert word_count(await chat(http, "Keywords: tea")) > 0


async def test_rate_limit_token_bucket(http: httpx.AsyncClient) -> None:
    await configure(http, rate_limit_per_second=2)
    body = {"model": "e", "input": "tea"}
    statuses = [(await http.post("/v1/embeddings", json=body)) for _ in range(4)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert statuses[2].status_code == 429 and int(statuses[2].headers["Retry-After"]) >= 1
    with pytest.raises(openai.RateLimitError):
        await sdk(http).embeddings.create(model="e", input="tea")
    await asyncio.sleep(0.6)
    assert (await http.post("/v1/embeddings", json=body)).status_code == 200
    assert (await http.get("/_fake/stats")).json()["rate_limited"] >= 3


async def test_latency_does_not_block_the_loop(http: httpx.AsyncClient) -> None:
    await configure(http, latency_ms=200)
    started = time.perf_counter()
    await asyncio.gather(*(chat(http, f"Keywords: tea {i}") for i in range(10)))
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 1.0


# --- control endpoints and request validation ---------------------------------------------


async def test_stats_count_calls_and_reset(http: httpx.AsyncClient) -> None:
    client = sdk(http)
    await chat(http, "Keywords: tea")
    await client.embeddings.create(model="e", input=["a", "b", "c"])
    await client.images.generate(model="gpt-image-1", prompt="tea", n=2, size="256x256")
    stats = (await http.get("/_fake/stats")).json()
    assert stats == {
        "chat": 1,
        "embeddings": 1,
        "embedding_inputs": 3,
        "images": 1,
        "image_count": 2,
        "errors_injected": 0,
        "malformed_injected": 0,
        "rate_limited": 0,
        "faults_injected": 0,
    }
    assert set((await http.post("/_fake/reset")).json().values()) == {0}
    assert set((await http.get("/_fake/stats")).json().values()) == {0}


async def test_runtime_config_validates(http: httpx.AsyncClient) -> None:
    await configure(http, latency_ms=5, malformed_if_prompt_contains="X")
    config = (await http.get("/_fake/config")).json()
    assert config["latency_ms"] == 5 and config["malformed_if_prompt_contains"] == "X" and config["error_rate"] == 0
    for bad in (
        {"error_rate": 2},
        {"latency_ms": -1},
        {"no_such_knob": 1},
        {"_env_file": "/etc/hostname"},
        {"seed": "x"},
        {"rate_limit_per_second": "fast"},
    ):
        assert (await http.post("/_fake/config", json=bad)).status_code == 422
    assert (await http.post("/_fake/config", json=[1])).status_code == 422
    assert (await http.get("/_fake/config")).json() == config


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEAI_ERROR_RATE", "0.25")
    monkeypatch.setenv("FAKEAI_MALFORMED_IF_PROMPT_CONTAINS", "BROKEN")
    settings = FakeSettings()
    assert settings.error_rate == 0.25 and settings.malformed_if_prompt_contains == "BROKEN"
    with pytest.raises(pydantic.ValidationError):
        FakeSettings(latency_ms=-5)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m"},
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}},
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            # Unconverted pydantic schema with strict=true: the real API rejects it, so does the fake.
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "S", "schema": Section.model_json_schema(), "strict": True},
            },
        },
    ],
)
async def test_bad_chat_requests_are_400(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_malformed_json_body_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


async def test_models_and_health(http: httpx.AsyncClient) -> None:
    models = await sdk(http).models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    assert (await http.get("/health")).json() == {"status": "ok"}


def test_prompt_parsing_conventions() -> None:
    info = parse_prompt(
        "system: keywords: ignored\nuser:\n  KEYWORDS: a b, c; d,\nTarget words: 1,500\nnumber of items: 7\n"
        "Outline:\n\n# H1\n## H2\n\nThe end."
    )
    assert info.keywords == ("a b", "c", "d") and info.explicit_keywords
    assert info.target_words == 1500 and info.n_items == 7
    assert info.outline == ("# H1", "## H2")
    assert re.fullmatch(r"\d+", str(info.seed))
    assert parse_prompt("Keyword: Running Shoes").keywords == ("Running Shoes",)
    assert parse_prompt("Outline:\nSee below\n## Not part of it").outline == ()


# --- fault rules and real-server behaviour --------------------------------------------------


async def test_max_tokens_is_honoured_like_a_real_server(http: httpx.AsyncClient) -> None:
    result = await sdk(http).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Keywords: tea\nTarget words: 300"}], max_tokens=10
    )
    assert result.choices[0].finish_reason == "length" and len(result.choices[0].message.content or "") == 40


async def test_fault_rules_hit_their_requests_the_given_number_of_times(http: httpx.AsyncClient) -> None:
    await configure(http, faults=[{"kind": "empty", "if_prompt_contains": "tea", "times": 1}])
    assert await chat(http, "Keywords: coffee") != ""
    assert await chat(http, "Keywords: tea") == ""  # hit
    assert await chat(http, "Keywords: tea") != ""  # spent
    assert (await http.get("/_fake/stats")).json()["faults_injected"] == 1
    bad = await http.post("/_fake/config", json={"faults": [{"kind": "no-such-fault"}]})
    assert bad.status_code == 422


async def test_rate_limit_rule_sends_retry_after_and_ratelimit_headers(http: httpx.AsyncClient) -> None:
    await configure(http, faults=[{"kind": "rate_limit", "retry_after": 2}])
    response = await http.post("/v1/embeddings", json={"model": "e", "input": "tea"})
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"] == "2s"


async def test_refused_parameters_and_native_dimensions(http: httpx.AsyncClient) -> None:
    await configure(http, reject_params=["dimensions"])
    refused = await http.post("/v1/embeddings", json={"model": "e", "input": "tea", "dimensions": 64})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "dimensions"
    assert refused.json()["error"]["code"] == "unsupported_parameter"
    await configure(http, reject_params=[], native_dimensions=384)
    body = (await http.post("/v1/embeddings", json={"model": "e", "input": "tea", "dimensions": 64})).json()
    assert len(body["data"][0]["embedding"]) == 384


async def test_json_mode_and_no_format_answer_the_shape_the_prompt_describes(http: httpx.AsyncClient) -> None:
    prompt = (
        'Keywords: tea\nReply with one JSON object only.\n- "intent": one of "informational", "commercial"\n'
        '- "title": string, at most 30 characters\nShape: {"intent": "informational", "title": "...", "n": 0}'
    )
    for fmt in ({"type": "json_object"}, None):
        doc = json.loads(await chat(http, prompt, fmt))
        assert set(doc) == {"intent", "title", "n"} and doc["intent"] in ("informational", "commercial")
        assert len(doc["title"]) <= 30 and isinstance(doc["n"], int)


async def test_azure_deployment_paths_are_served(http: httpx.AsyncClient) -> None:
    body = {"messages": [{"role": "user", "content": "Keywords: tea"}], "model": "ignored"}
    response = await http.post("/openai/deployments/my-model/chat/completions?api-version=2024-10-21", json=body)
    assert response.status_code == 200
    (seen,) = (await http.get("/_fake/requests")).json()
    assert seen["path"] == "/openai/deployments/my-model/chat/completions" and seen["query"] == "api-version=2024-10-21"
