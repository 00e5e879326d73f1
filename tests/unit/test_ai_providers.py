"""Per-function providers (issue 10): chat, embeddings and images each on their own base URL and key, models
per AI function, `dimensions` only when configured, dimension mismatches named, Azure OpenAI, timeouts and
retry budgets per function, and the devstack passing the caller's settings through."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, Field, SecretStr

from devstack.stack import Stack
from fakeai import FakeSettings
from fakeai.embeddings import embed as fake_vectors
from fakeai.serve import RunningFake, serving
from shared.ai import AiClient, AiError, EmbeddingDimensionError, Usage
from shared.ai.client import vector_of
from shared.ai.config import attempt_timeouts, endpoint, grown_budget, required_budget, retry_budget
from shared.settings import Settings


class Label(BaseModel):
    name: str = Field(max_length=80)


@pytest.fixture
async def fake() -> AsyncIterator[RunningFake]:
    async with serving() as running:
        yield running


def on(fake: RunningFake, **extra: Any) -> Settings:
    return Settings(**({"openai_base_url": fake.url, "openai_api_key": SecretStr("k")} | extra))


async def test_chat_embeddings_and_images_on_three_base_urls_without_dimensions() -> None:
    async with serving() as chat, serving() as emb, serving() as img:
        settings = Settings(
            openai_base_url=None,
            openai_api_key=SecretStr(""),
            chat_base_url=chat.url,
            chat_api_key=SecretStr("chat-key"),
            embedding_base_url=emb.url,
            embedding_api_key=SecretStr("embedding-key"),
            embedding_model="local-embedder",
            image_base_url=img.url,
            image_model="local-painter",
        )
        ai, usage = AiClient(settings), Usage()
        ai.check_configured()
        await ai.structured("Name it.", "Keywords: espresso", Label, "cluster-label", usage)
        vectors = await ai.embed(["espresso", "latte"], "keyword-embeddings", usage)
        png = await ai.image_png("a cup", "256x256", "low", "image", usage)
        await ai.close()
        assert vectors.shape == (2, 256) and png.startswith(b"\x89PNG")
        assert [(s["chat"], s["embeddings"], s["images"]) for s in [await f.stats() for f in (chat, emb, img)]] == [
            (1, 0, 0),
            (0, 1, 0),
            (0, 0, 1),
        ]
        (sent,) = await emb.requests()
        assert "dimensions" not in sent["body"] and sent["body"]["model"] == "local-embedder"
        assert (await img.requests())[0]["body"]["model"] == "local-painter"
        assert [r.kind for r in usage.records] == ["chat", "embeddings", "image"] and all(r.ok for r in usage.records)


async def test_dimensions_are_sent_only_when_configured(fake: RunningFake) -> None:
    ai = AiClient(on(fake, embedding_dimensions=64))
    assert (await ai.embed(["a", "b"], "kw", Usage())).shape == (2, 64)
    assert (await fake.requests())[0]["body"]["dimensions"] == 64


async def test_a_provider_ignoring_dimensions_is_detected_and_named() -> None:
    async with serving(FakeSettings(native_dimensions=384)) as fake:
        ai, usage = AiClient(on(fake, embedding_dimensions=256)), Usage()
        with pytest.raises(EmbeddingDimensionError) as caught:
            await ai.embed(["a", "b"], "keyword-embeddings", usage)
    err = caught.value
    assert (err.expected, err.got, err.model) == (256, 384, "text-embedding-3-small")
    assert err.reason.startswith("keyword-embeddings: embedding dimension mismatch: text-embedding-3-small at 127.")
    assert "CONTENTLINE_EMBEDDING_DIMENSIONS is 256: set it to 384 or leave it unset" in err.reason
    assert usage.records[-1].outcome == "dimension_mismatch"


async def test_vectors_of_another_size_than_the_stored_ones_are_refused(fake: RunningFake) -> None:
    ai = AiClient(on(fake))
    with pytest.raises(EmbeddingDimensionError, match="returned 256 dimensions, expected 384; the vectors already"):
        await ai.embed(["a"], "keyword-embeddings", Usage(), expected_dimensions=384)
    assert (await ai.embed(["a"], "keyword-embeddings", Usage(), expected_dimensions=256)).shape == (1, 256)


async def test_a_refused_dimensions_parameter_is_left_out_and_the_size_still_checked() -> None:
    async with serving(FakeSettings(reject_params=["dimensions"])) as fake:
        ai, usage = AiClient(on(fake, embedding_dimensions=256)), Usage()
        assert (await ai.embed(["a"], "kw", usage)).shape == (1, 256)  # the model's own size matches
        first, second = await fake.requests()
        assert first["body"]["dimensions"] == 256 and "dimensions" not in second["body"]
        assert usage.records[0].outcome == "unsupported_parameter" and "'dimensions'" in (usage.records[0].error or "")
        ai64 = AiClient(on(fake, embedding_dimensions=64))
        with pytest.raises(EmbeddingDimensionError, match=r"the provider refused 'dimensions'"):
            await ai64.embed(["a"], "kw", Usage())


TEXTS = ["espresso beans", "french press", "moka pot", "cold brew", "latte art", "pour over"]


async def test_vectors_come_as_base64_and_are_decoded_in_order(fake: RunningFake) -> None:
    ai = AiClient(on(fake, embedding_batch_size=4))
    vectors = await ai.embed(TEXTS, "kw", Usage())
    assert [r["body"]["encoding_format"] for r in await fake.requests()] == ["base64", "base64"]
    assert np.allclose(vectors, fake_vectors(TEXTS), atol=1e-6)


async def test_a_provider_that_answers_floats_anyway_is_read_the_same() -> None:
    async with serving(FakeSettings(embeddings_as_floats=True)) as fake:
        vectors = await AiClient(on(fake)).embed(TEXTS, "kw", Usage())
    assert np.allclose(vectors, fake_vectors(TEXTS), atol=1e-6)


async def test_a_provider_refusing_base64_is_asked_for_floats_from_then_on() -> None:
    async with serving(FakeSettings(embedding_encodings=["float"])) as fake:
        ai, usage = AiClient(on(fake)), Usage()
        vectors = await ai.embed(TEXTS, "kw", usage)
        await ai.embed(["one more"], "kw", Usage())
        sent = [r["body"]["encoding_format"] for r in await fake.requests()]
    assert sent == ["base64", "float", "float"]
    assert [r.outcome for r in usage.records] == ["unsupported_parameter", "ok"]
    assert "'encoding_format'" in (usage.records[0].error or "")
    assert np.allclose(vectors, fake_vectors(TEXTS), atol=1e-6)


def test_an_unreadable_vector_is_refused() -> None:
    assert vector_of([0.5, 0.25]).tolist() == [0.5, 0.25]
    with pytest.raises(ValueError, match="not float32"):
        vector_of("AAAA")  # three bytes
    with pytest.raises(ValueError):
        vector_of("not base64!")


async def test_a_large_embedding_request_sends_its_batches_side_by_side(fake: RunningFake) -> None:
    """Three batches against a provider that takes 1.5 s per request: one after another would take 4.5 s."""
    await fake.configure(faults=[{"kind": "slow", "endpoint": "embeddings", "delay_ms": 1500}])
    ai, usage = AiClient(on(fake, embedding_batch_size=2)), Usage()
    started = time.monotonic()
    vectors = await ai.embed(TEXTS, "kw", usage)
    assert time.monotonic() - started < 3.0
    assert len(usage.records) == 3 and all(r.ok for r in usage.records)
    assert np.allclose(vectors, fake_vectors(TEXTS), atol=1e-6)  # rows in the texts' order


async def test_one_failed_batch_fails_the_request_and_names_it(fake: RunningFake) -> None:
    await fake.configure(faults=[{"kind": "not_supported", "endpoint": "embeddings", "if_prompt_contains": "moka"}])
    ai, usage = AiClient(on(fake, embedding_batch_size=2)), Usage()
    with pytest.raises(AiError, match=r"kw: .*501"):
        await ai.embed(TEXTS, "kw", usage)
    outcomes = [r.outcome for r in usage.records]
    assert len(outcomes) == 3 and outcomes.count("not_supported") == 1
    assert set(outcomes) <= {"not_supported", "ok", "cancelled"}  # a sibling still out is cancelled, and says so


async def test_chat_models_per_ai_function(fake: RunningFake) -> None:
    ai = AiClient(on(fake, chat_model="general", ideas_model="planner", draft_section_model="writer"))
    for purpose in ("cluster-label", "ideas", "draft-frame", "draft-section", "image-prompts"):
        await ai.structured("s", "Keywords: tea", Label, purpose, Usage())
    models = [r["body"]["model"] for r in await fake.requests()]
    assert models == ["general", "planner", "general", "writer", "general"]


async def test_azure_openai_deployments_api(fake: RunningFake) -> None:
    ai = AiClient(on(fake, openai_base_url=fake.root, chat_api_version="2024-10-21", chat_model="my-deployment"))
    assert ai.endpoint("chat").where.endswith("(Azure)")
    await ai.structured("s", "Keywords: tea", Label, "cluster-label", Usage())
    (sent,) = await fake.requests()
    assert sent["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert sent["query"] == "api-version=2024-10-21" and sent["api_key_header"]


def test_timeouts_per_function_and_a_budget_that_fits_every_attempt() -> None:
    s = Settings(openai_api_key=SecretStr("k"))
    assert [endpoint(s, f).timeout for f in ("chat", "embeddings", "images")] == [60, 120, 180]
    s = Settings(openai_api_key=SecretStr("k"), ai_timeout_seconds=30, embedding_timeout_seconds=90)
    assert [endpoint(s, f).timeout for f in ("chat", "embeddings", "images")] == [30, 90, 30]
    chat = endpoint(s, "chat")
    assert retry_budget(s, chat) == grown_budget(30, 4) >= required_budget(30, 4)  # derived: all 4 attempts fit
    assert attempt_timeouts(30, 4) == [30, 60, 120, 120]  # each timeout doubles, up to 4x the configured one
    AiClient(s).check_configured()
    tight = Settings(openai_api_key=SecretStr("k"), ai_retry_budget_seconds=120, chat_timeout_seconds=60)
    needs = r"=120 cannot fit CONTENTLINE_AI_MAX_ATTEMPTS=4 attempts of the chat timeout 60 s \(needs at least 330 s\)"
    with pytest.raises(RuntimeError, match=needs):
        AiClient(tight).check_configured()


def test_each_function_needs_a_provider_and_says_which() -> None:
    s = Settings(openai_api_key=SecretStr(""), openai_base_url=None, chat_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(RuntimeError) as caught:
        AiClient(s).check_configured()
    message = str(caught.value)
    assert "no provider for embeddings" in message and "no provider for images" in message
    assert "no provider for chat" not in message and "CONTENTLINE_EMBEDDING_BASE_URL" in message


def test_the_devstack_passes_the_callers_settings_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONTENTLINE_CHAT_MODEL", "qwen2.5:7b")
    monkeypatch.setenv("CONTENTLINE_EMBEDDING_TIMEOUT_SECONDS", "240")
    monkeypatch.setenv("CONTENTLINE_CHAT_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("CONTENTLINE_DATABASE_URL", "postgresql://elsewhere")
    real = Stack(state_dir=tmp_path, use_fake_ai=False, database_url="postgresql://stack").env()
    assert real["CONTENTLINE_CHAT_MODEL"] == "qwen2.5:7b" and real["CONTENTLINE_EMBEDDING_TIMEOUT_SECONDS"] == "240"
    assert real["CONTENTLINE_CHAT_BASE_URL"] == "http://127.0.0.1:11434/v1"
    assert real["OPENAI_BASE_URL"] == "http://127.0.0.1:8000/v1" and real["CONTENTLINE_DATABASE_URL"] == "postgresql://stack"
    stack = Stack(state_dir=tmp_path, use_fake_ai=True)
    fake = stack.env()
    assert fake["CONTENTLINE_CHAT_MODEL"] == "qwen2.5:7b"  # models and timeouts still apply to the fake
    assert "CONTENTLINE_CHAT_BASE_URL" not in fake and fake["OPENAI_BASE_URL"] == f"{stack.fake_url}/v1"
