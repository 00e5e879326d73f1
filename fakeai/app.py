"""FastAPI app: OpenAI-compatible endpoints plus ``/_fake/*`` control endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fakeai import embeddings, faults, images, shape, structured
from fakeai.faults import FaultRule
from fakeai.settings import FakeSettings
from fakeai.text import parse_prompt, stable_hash

HISTORY = 2000  # requests kept for /_fake/requests: enough for a test window while other work runs
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
    faults_injected: int = 0


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
        # The last requests as received (endpoint, body, path), for tests that check what a client sent.
        self.requests: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.apply(settings)

    def apply(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self._spent: dict[int, int] = {}  # fault rule index -> requests it has hit
        self._tokens = max(1.0, settings.rate_limit_per_second)
        self._stamp = time.monotonic()

    def reset(self) -> None:
        self.stats = Stats()
        self.requests.clear()
        self.apply(self.settings)

    def record(self, endpoint: str, request: Request, body: BaseModel) -> None:
        self.requests.append(
            {"endpoint": endpoint, "path": request.url.path, "query": str(request.url.query),
             "api_key_header": "api-key" in request.headers, "body": body.model_dump(exclude_unset=True)}
        )  # fmt: skip

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
            headers = {
                "Retry-After": str(math.ceil(wait)),
                "retry-after-ms": str(math.ceil(wait * 1000)),
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{math.ceil(wait * 1000)}ms",
            }
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

    async def rules(self, endpoint: str, prompt: str | None, params: set[str]) -> list[FaultRule]:
        """The fault rules this request meets (each counted against its `times`); `slow` ones sleep here."""
        hit: list[FaultRule] = []
        for i, rule in enumerate(self.settings.faults):
            if not faults.matches(rule, endpoint, prompt, params):
                continue
            if rule.times is not None and self._spent.get(i, 0) >= rule.times:
                continue
            self._spent[i] = self._spent.get(i, 0) + 1
            self.stats.faults_injected += 1
            if rule.kind == "slow":
                await asyncio.sleep(rule.delay_ms / 1000)
            hit.append(rule)
        return hit

    async def refusal(
        self, endpoint: str, prompt: str | None, params: set[str]
    ) -> tuple[JSONResponse | None, set[str]]:
        """A configured 400 for a parameter this server "does not support", else the request's fault kinds."""
        refused = sorted(params & set(self.settings.reject_params))
        if refused:
            self.stats.faults_injected += 1
            message = f"Unsupported parameter: '{refused[0]}' is not supported with this model."
            return openai_error(
                400, message, "invalid_request_error", param=refused[0], code="unsupported_parameter"
            ), set()
        hit = await self.rules(endpoint, prompt, params)
        for rule in hit:
            if (response := faults.error_response(rule, endpoint)) is not None:
                return response, set()
        return None, {r.kind for r in hit}

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
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        if body.stream:
            return openai_error(400, "stream=true is not supported by fakeai", "invalid_request_error", param="stream")
        state.stats.chat += 1
        state.record("chat", request, body)
        prompt = "\n".join(m.text() for m in body.messages)
        if failure := await state.fault(prompt):
            return failure
        extra = body.model_extra or {}
        if problem := request_problem(state.settings, body):
            return problem
        if (window := state.settings.context_tokens) is not None:
            wanted = extra.get("max_completion_tokens") or extra.get("max_tokens") or 0
            if isinstance(wanted, int) and _tokens(prompt) + wanted > window:
                message = (
                    f"This model's maximum context length is {window} tokens. However, you requested "
                    f"{_tokens(prompt) + wanted} tokens ({_tokens(prompt)} in the messages, {wanted} in the "
                    "completion). Please reduce the length of the messages or completion."
                )
                return openai_error(400, message, "BadRequestError")
        refused, kinds = await state.refusal("chat", prompt, {*body.model_fields_set, *extra})
        if refused is not None:
            return refused
        fmt = body.response_format
        bad = state.malformed(prompt, structured.is_json_format(fmt))
        described = shape.from_prompt(prompt) if (fmt or {}).get("type") != "json_schema" else None
        try:
            content: str | None = structured.completion(
                parse_prompt(prompt), fmt, bad=bad, strict_check=state.settings.strict_schema_check, shape=described
            )
        except structured.ResponseFormatError as exc:
            return openai_error(400, str(exc), "invalid_request_error", param="response_format")
        state.stats.malformed_injected += int(bad)
        content, refusal, finish = reply_faults(content or "", kinds)
        limit = extra.get("max_completion_tokens") or extra.get("max_tokens")
        if state.settings.honour_max_tokens and isinstance(limit, int) and content and faults.tokens(content) > limit:
            content, finish = faults.cut_to(content, limit), "length"
        request_key = stable_hash(body.model, prompt, json.dumps(fmt, sort_keys=True))
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(content or "")}
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
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": {**usage, "total_tokens": sum(usage.values())},
            }
        )

    @app.post("/v1/embeddings")
    async def create_embeddings(body: embeddings.EmbeddingRequest, request: Request) -> Response:
        try:
            texts = embeddings.validate_inputs(body)
        except embeddings.EmbeddingInputError as exc:
            return openai_error(400, str(exc), "invalid_request_error", param=exc.param)
        state.stats.embeddings += 1
        state.record("embeddings", request, body)
        if failure := await state.fault(None):
            return failure
        params = {*body.model_fields_set, *(body.model_extra or {})}
        refused, _ = await state.refusal("embeddings", " ".join(texts), params)
        if refused is not None:
            return refused
        encoding = body.encoding_format or "float"
        if encoding not in state.settings.embedding_encodings:
            message = f"Unsupported value: 'encoding_format' does not support {encoding!r} with this model."
            return openai_error(
                400, message, "invalid_request_error", param="encoding_format", code="unsupported_parameter"
            )
        state.stats.embedding_inputs += len(texts)
        if state.settings.embeddings_as_floats:
            body = body.model_copy(update={"encoding_format": "float"})
        return JSONResponse(embeddings.response(body, texts, state.settings.native_dimensions))

    @app.post("/v1/images/generations")
    async def generate_images(body: images.ImageRequest, request: Request) -> Response:
        try:
            width, height = images.parse_size(body.size)
        except images.ImageInputError as exc:
            return openai_error(400, str(exc), "invalid_request_error", param=exc.param)
        state.stats.images += 1
        state.record("images", request, body)
        if failure := await state.fault(body.prompt):
            return failure
        refused, _ = await state.refusal("images", body.prompt, {*body.model_fields_set, *(body.model_extra or {})})
        if refused is not None:
            return refused
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

    # Azure OpenAI's deployments API: the same endpoints under /openai/deployments/<model>/...?api-version=
    for path, endpoint in (
        ("/chat/completions", chat_completions),
        ("/embeddings", create_embeddings),
        ("/images/generations", generate_images),
    ):
        app.add_api_route(f"/openai/deployments/{{deployment}}{path}", endpoint, methods=["POST"])

    @app.get("/_fake/requests")
    async def get_requests() -> list[dict[str, Any]]:
        return list(state.requests)

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


def request_problem(settings: FakeSettings, body: ChatRequest) -> JSONResponse | None:
    """A 400 for a response format this server is configured not to support (as JSON-mode-only servers do)."""
    fmt = body.response_format or {}
    kind = str(fmt.get("type", "text"))
    if kind not in settings.response_formats:
        allowed = ", ".join(settings.response_formats)
        message = f"response_format type '{kind}' is not supported by this server (supported: {allowed})"
        return openai_error(400, message, "invalid_request_error", param="response_format")
    spec = fmt.get("json_schema")
    if kind == "json_schema" and isinstance(spec, dict) and settings.reject_schema_keywords:
        found = structured.keyword_in_schema(spec.get("schema"), set(settings.reject_schema_keywords))
        if found:
            keyword, path = found
            message = (
                f"Invalid schema for response_format '{spec.get('name')}': In context=({path}), "
                f"'{keyword}' is not permitted."
            )
            return openai_error(400, message, "invalid_request_error", param="response_format")
    return None


def reply_faults(content: str, kinds: set[str]) -> tuple[str | None, str | None, str]:
    """Apply the reply faults of the request's rules: (content, refusal, finish_reason)."""
    if "wrong_language" in kinds:
        try:
            content = json.dumps(faults.germanise(json.loads(content)), ensure_ascii=False)
        except ValueError:
            content = faults.german(len(content.split()))
    if "placeholder" in kinds:
        with contextlib.suppress(ValueError):
            content = json.dumps(faults.placeholders(json.loads(content)), ensure_ascii=False)
    if "phrase_loop" in kinds:
        with contextlib.suppress(ValueError):
            content = json.dumps(faults.phrase_loop(json.loads(content)), ensure_ascii=False)
    if "schema_violation" in kinds:
        with contextlib.suppress(ValueError):
            content = faults.drop_required(json.loads(content))
    if "invalid_json" in kinds:
        content = faults.truncate(content)
    if "fenced" in kinds:
        content = f"Here is the JSON you asked for:\n```json\n{content}\n```"
    if "refusal" in kinds:
        return None, faults.REFUSAL, "stop"
    if "refusal_text" in kinds:
        return faults.REFUSAL, None, "stop"
    if "empty" in kinds:
        return "", None, "stop"
    if "cut_off" in kinds:
        return content[: max(1, len(content) // 2)], None, "length"
    return content, None, "stop"


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "fakeai"}
