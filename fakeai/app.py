"""FastAPI app: OpenAI-compatible endpoints plus ``/_fake/*`` control endpoints."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fakeai import embeddings, images, structured
from fakeai.settings import FakeSettings
from fakeai.text import parse_prompt, stable_hash

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini", "text-embedding-3-small", "gpt-image-1")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") in ("text", "input_text"))
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    response_format: dict[str, Any] | None = None
    stream: bool | None = None


@dataclass
class Stats:
    chat: int = 0
    embeddings: int = 0
    embedding_inputs: int = 0
    images: int = 0
    image_count: int = 0
    errors_injected: int = 0
    malformed_injected: int = 0
    rate_limited: int = 0


def openai_error(
    status: int,
    message: str,
    kind: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeState:
    """Knobs, counters, seeded RNG and token bucket; touched only from the event loop, so no locks."""

    def __init__(self, settings: FakeSettings) -> None:
        self.stats = Stats()
        self.apply(settings)

    def apply(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self._tokens = max(1.0, settings.rate_limit_per_second)
        self._stamp = time.monotonic()

    def reset(self) -> None:
        self.stats = Stats()
        self.apply(self.settings)

    def _rate_limit_wait(self) -> float:
        rate = self.settings.rate_limit_per_second
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(max(1.0, rate), self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / rate

    async def fault(self, prompt: str | None) -> JSONResponse | None:
        """Latency, then rate limiting and error injection; a response means "fail with this"."""
        s = self.settings
        if s.latency_ms:
            await asyncio.sleep(s.latency_ms / 1000)
        if wait := self._rate_limit_wait():
            self.stats.rate_limited += 1
            headers = {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
            return openai_error(
                429, "Rate limit reached (fakeai token bucket)", "requests", code="rate_limit_exceeded", headers=headers
            )
        forced = prompt is not None and s.error_if_prompt_contains is not None and s.error_if_prompt_contains in prompt
        if forced or (s.error_rate and self.rng.random() < s.error_rate):
            self.stats.errors_injected += 1
            # retry-after-ms keeps the SDK's own retries fast; Retry-After: 0 is for everyone else.
            headers = {"Retry-After": "0", "retry-after-ms": "10"}
            if not forced and self.rng.random() < 0.5:
                return openai_error(
                    429, "Rate limit reached (fakeai injected)", "requests", code="rate_limit_exceeded", headers=headers
                )
            return openai_error(500, "The server had an error (fakeai injected)", "server_error", headers=headers)
        return None

    def malformed(self, prompt: str, json_mode: bool) -> bool:
        s = self.settings
        if s.malformed_if_prompt_contains is not None and s.malformed_if_prompt_contains in prompt:
            return True
        return json_mode and bool(s.malformed_rate) and self.rng.random() < s.malformed_rate


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not request.url.path.startswith("/v1/"):
        return await request_validation_exception_handler(request, exc)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ())][1:]
    message = f"Invalid request: {'.'.join(loc) or 'body'}: {first.get('msg', 'invalid value')}"
    return openai_error(400, message, "invalid_request_error", param=".".join(loc) or None)


def create_app(settings: FakeSettings | None = None) -> FastAPI:
    state = FakeState(settings or FakeSettings())
    app = FastAPI(title="fakeai", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = state
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest) -> Response:
        if body.stream:
            return openai_error(400, "stream=true is not supported by fakeai", "invalid_request_error", param="stream")
        state.stats.chat += 1
        prompt = "\n".join(m.text() for m in body.messages)
        if failure := await state.fault(prompt):
            return failure
        bad = state.malformed(prompt, structured.is_json_format(body.response_format))
        try:
            content = structured.completion(
                parse_prompt(prompt), body.response_format, bad=bad, strict_check=state.settings.strict_schema_check
            )
        except structured.ResponseFormatError as exc:
            return openai_error(400, str(exc), "invalid_request_error", param="response_format")
        state.stats.malformed_injected += int(bad)
        request_key = stable_hash(body.model, prompt, json.dumps(body.response_format, sort_keys=True))
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(content)}
        return JSONResponse(
            {
                "id": f"chatcmpl-{request_key:016x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.model,
                "system_fingerprint": "fp_fakeai",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {**usage, "total_tokens": sum(usage.values())},
            }
        )

    @app.post("/v1/embeddings")
    async def create_embeddings(body: embeddings.EmbeddingRequest) -> Response:
        try:
            texts = embeddings.validate_inputs(body)
        except embeddings.EmbeddingInputError as exc:
            return openai_error(400, str(exc), "invalid_request_error", param=exc.param)
        state.stats.embeddings += 1
        if failure := await state.fault(None):
            return failure
        state.stats.embedding_inputs += len(texts)
        return JSONResponse(embeddings.response(body, texts))

    @app.post("/v1/images/generations")
    async def generate_images(body: images.ImageRequest) -> Response:
        try:
            width, height = images.parse_size(body.size)
        except images.ImageInputError as exc:
            return openai_error(400, str(exc), "invalid_request_error", param=exc.param)
        state.stats.images += 1
        if failure := await state.fault(body.prompt):
            return failure
        # PNG encoding takes tens of ms per large image: keep it off the event loop.
        rendered = await asyncio.to_thread(
            lambda: [images.render(body.prompt, width, height, i, body.fmt) for i in range(body.count)]
        )
        state.stats.image_count += len(rendered)
        return JSONResponse(images.response_body(body, rendered, int(time.time())))

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(m) for m in MODELS]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        return _model(model_id)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_fake/stats")
    async def get_stats() -> dict[str, int]:
        return asdict(state.stats)

    @app.post("/_fake/reset")
    async def reset() -> dict[str, int]:
        state.reset()
        return asdict(state.stats)

    @app.get("/_fake/config")
    async def get_config() -> dict[str, Any]:
        return state.settings.model_dump()

    @app.post("/_fake/config")
    async def set_config(patch: dict[str, Any]) -> Response:
        try:
            state.apply(state.settings.updated(patch))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)
        return JSONResponse(state.settings.model_dump())

    return app


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "fakeai"}
