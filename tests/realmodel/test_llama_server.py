"""The local model server answers the OpenAI endpoints the services use, and the stack routes to it.

Only what contentline relies on: models, chat with max_tokens and grammar-constrained JSON, the finish reason
of a cut-off, usage; the services' per-function providers (chat from llama-server, embeddings/images from the
fake), and a client that gives up stops the generation it asked for.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import jsonschema
import pytest

from devstack.llama import MODEL_ALIAS, ServerOptions
from devstack.stack import LOCAL_MODEL_CHAT_TIMEOUT, Stack
from shared.ai.config import endpoint
from shared.settings import Settings

pytestmark = pytest.mark.realmodel

HELLO = [{"role": "user", "content": "Say hello to a new gardener in one sentence."}]


def chat(client: httpx.Client, **body: object) -> dict[str, object]:
    r = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_models_lists_the_served_model(llama: httpx.Client) -> None:
    r = llama.get("/v1/models")
    assert r.status_code == 200
    assert MODEL_ALIAS in [m["id"] for m in r.json()["data"]]


def test_chat_answers_with_usage(llama: httpx.Client) -> None:
    body = chat(llama, messages=HELLO, max_tokens=40)
    choice = body["choices"][0]  # type: ignore[index]
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 40  # type: ignore[index,operator]


def test_max_tokens_cuts_the_reply_and_says_length(llama: httpx.Client) -> None:
    body = chat(llama, messages=[{"role": "user", "content": "Write a long essay about dogs."}], max_tokens=7)
    assert body["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    assert body["usage"]["completion_tokens"] == 7  # type: ignore[index]


def test_json_schema_is_grammar_constrained(llama: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 40},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 15}, "maxItems": 3},
        },
        "required": ["title", "tags"],
        "additionalProperties": False,
    }
    body = chat(
        llama,
        messages=[{"role": "user", "content": "A title and tags for an article about dog training."}],
        response_format={"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": schema}},
        max_tokens=200,
    )
    content = body["choices"][0]["message"]["content"]  # type: ignore[index]
    jsonschema.validate(json.loads(content), schema)  # bounds held by the grammar, not by the model's manners


def test_services_get_chat_from_the_model_and_the_rest_from_the_fake(
    real_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The services' settings, read from the environment the stack gives them.
    env = real_stack.env()
    for name in [k for k in env if k.startswith(("CONTENTLINE_", "OPENAI_"))]:
        monkeypatch.setenv(name, env[name])
    settings = Settings()
    chat_at, embeddings, images = (endpoint(settings, f) for f in ("chat", "embeddings", "images"))
    assert chat_at.base_url == f"{real_stack.llama_url}/v1" and chat_at.model == MODEL_ALIAS
    slots = int(os.environ.get("CONTENTLINE_CHAT_MAX_CONCURRENCY", ServerOptions.from_env().parallel))
    assert chat_at.concurrency == slots  # none of a service's requests waits inside the server
    timeout = float(os.environ.get("CONTENTLINE_CHAT_TIMEOUT_SECONDS", LOCAL_MODEL_CHAT_TIMEOUT))
    assert chat_at.timeout == timeout
    assert embeddings.base_url == images.base_url == f"{real_stack.fake_url}/v1"
    with httpx.Client(base_url=real_stack.llama_url, timeout=300) as model:
        assert "timings" in chat(model, messages=HELLO, max_tokens=8)  # llama-server's own field: the fake has none
    with httpx.Client(base_url=real_stack.fake_url, timeout=60) as fake:
        body = {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 64}
        emb = fake.post("/v1/embeddings", json=body)
        assert emb.status_code == 200 and [len(d["embedding"]) for d in emb.json()["data"]] == [64, 64]
        img = fake.post("/v1/images/generations", json={"model": "gpt-image-1", "prompt": "a cat", "size": "256x256"})
        assert img.status_code == 200 and img.json()["data"][0]["b64_json"]


def test_a_client_that_gives_up_stops_the_generation(real_stack: Stack) -> None:
    # ignore_eos (llama.cpp's own parameter): the story runs to max_tokens unless the server stops it, which at
    # this machine's 10-46 tokens/s takes 87 s or more for 4,000 tokens.
    long_job = {"model": "x", "messages": [{"role": "user", "content": "Write a very long story."}],
                "max_tokens": 4000, "ignore_eos": True}  # fmt: skip
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{real_stack.llama_url}/v1/chat/completions", json=long_job, timeout=3)
    with httpx.Client(base_url=real_stack.llama_url, timeout=30) as direct:
        # The server looks at a non-streaming client's socket only after a full second without any result in its
        # queue (llama.cpp tools/server: server_response_reader::next, recv_with_timeout(1 s)), and every /slots
        # answer is such a result and restarts that second. Polled every 0.2 s, the cancel waited for a gap in our
        # own polling (measured: under 1 s to ~34 s, once to the end under CI load). Polled every 2.5 s, the server
        # gets its quiet second. What must hold: it stops long before the 4,000 tokens are done, the last look at
        # the busy slot still showing tokens remaining (at the end n_remain would be ~0).
        started, last = time.monotonic(), None
        while busy := [s for s in direct.get("/slots").json() if s["is_processing"]]:
            last = next((t for s in busy for t in (s.get("next_token") or [])), last)
            assert time.monotonic() < started + 600, f"llama-server still generates for a client that left: {last}"
            time.sleep(2.5)
        assert last is None or last["n_remain"] > 100, f"the generation ran to its end: {last}"
