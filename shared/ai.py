"""The one module that talks to the `openai` SDK.

Works against OpenAI, Azure-style gateways and OpenAI-compatible servers (vLLM, Ollama, LM Studio,
the project's `fakeai`) through `base_url`. Every call has a hard timeout; transient failures (timeouts,
connection errors, 429, 5xx) are retried with jittered backoff inside a time budget (tenacity, honouring
Retry-After); invalid structured output is re-asked a bounded number of times. Each call returns a
`CallRecord` so the caller can store usage in the same transaction as the results.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import openai
from openai import AsyncOpenAI
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from shared.settings import Settings

T = TypeVar("T", bound=BaseModel)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,  # our own wall-clock limit per attempt (the SDK's timeout is per network phase)
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)


class AiError(Exception):
    """A model call that failed for good; `reason` is what the item failure records."""

    def __init__(self, reason: str, transient: bool) -> None:
        reason = reason if len(reason) <= 1000 else reason[:997] + "..."  # provider bodies can be whole pages
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass
class CallRecord:
    kind: str  # chat|embeddings|image
    model: str
    purpose: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    attempts: int = 0
    ok: bool = True
    error: str | None = None
    ms: int = 0


@dataclass
class Usage:
    records: list[CallRecord] = field(default_factory=list)

    def add(self, record: CallRecord) -> None:
        self.records.append(record)


def _wait_with_retry_after(base: wait_exponential_jitter) -> Any:
    def wait(state: RetryCallState) -> float:
        delay = base(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, openai.APIStatusError):
            header = exc.response.headers.get("retry-after")
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(header), 30.0)) if header else delay
        return delay

    return wait


class AiClient:
    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._sdk: AsyncOpenAI | None = None  # built on first use: the orchestrator never needs one
        self._slots = asyncio.Semaphore(settings.ai_max_concurrency)

    def check_configured(self) -> None:
        """Fail at start-up, with the fix in the message, rather than on the first model call."""
        if not self._s.openai_api_key.get_secret_value() and not self._s.openai_base_url:
            raise RuntimeError(
                "no AI provider configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible "
                "server such as vLLM, Ollama or the project's fakeai)"
            )

    @property
    def _client(self) -> AsyncOpenAI:
        if self._sdk is None:
            self.check_configured()
            # Local OpenAI-compatible servers often need no key, but the SDK insists on one.
            key = self._s.openai_api_key.get_secret_value() or "unused"
            # SDK retries off: ours are budgeted and counted per call record.
            self._sdk = AsyncOpenAI(
                api_key=key, base_url=self._s.openai_base_url, timeout=self._s.ai_timeout_seconds, max_retries=0
            )
        return self._sdk

    async def close(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    async def _call(self, record: CallRecord, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            stop=stop_after_attempt(self._s.ai_max_attempts) | stop_after_delay(self._s.ai_retry_budget_seconds),
            wait=_wait_with_retry_after(wait_exponential_jitter(initial=0.2, max=8.0)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    record.attempts += 1
                    async with self._slots, asyncio.timeout(self._s.ai_timeout_seconds):
                        return await fn(*args, **kwargs)
        except TRANSIENT_ERRORS as exc:
            detail = str(exc)[:500] or type(exc).__name__
            record.ok, record.error = False, f"transient error after {record.attempts} attempts: {detail}"
            raise AiError(record.error, transient=True) from exc
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError):
            raise  # structured() decides: re-ask after a cut-off answer, give up on a content filter
        except openai.OpenAIError as exc:
            record.ok, record.error = False, f"provider refused the request: {str(exc)[:500]}"
            raise AiError(record.error, transient=False) from exc
        finally:
            record.ms += int((time.perf_counter() - started) * 1000)
        raise AssertionError("unreachable")  # pragma: no cover

    async def structured(
        self, system: str, user: str, schema: type[T], purpose: str, usage: Usage, temperature: float = 0.7
    ) -> T:
        """A chat completion parsed into `schema`; invalid output is re-asked, then AiError(permanent)."""
        last_problem = ""
        for _ in range(self._s.ai_invalid_output_attempts):
            record = CallRecord(kind="chat", model=self._s.chat_model, purpose=purpose)
            usage.add(record)
            try:
                completion = await self._call(
                    record,
                    self._client.chat.completions.parse,
                    model=self._s.chat_model,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                    response_format=schema,
                    temperature=temperature,
                )
            except openai.ContentFilterFinishReasonError as exc:
                record.ok, record.error = False, "the provider's content filter stopped the answer"
                raise AiError(f"{purpose}: {record.error}", transient=False) from exc
            except (ValidationError, ValueError, openai.LengthFinishReasonError) as exc:
                record.ok, record.error = False, f"invalid structured output: {str(exc)[:500]}"
                last_problem = record.error
                continue
            if completion.usage is not None:
                record.prompt_tokens = completion.usage.prompt_tokens
                record.completion_tokens = completion.usage.completion_tokens
            message = completion.choices[0].message
            if message.parsed is None:
                record.ok = False
                record.error = last_problem = f"no structured output (refusal: {message.refusal or 'none'})"
                continue
            parsed: T = message.parsed
            return parsed
        raise AiError(
            f"{purpose}: invalid output after {self._s.ai_invalid_output_attempts} attempts; last: {last_problem}",
            transient=False,
        )

    async def embed(self, texts: Sequence[str], purpose: str, usage: Usage) -> npt.NDArray[np.float32]:
        """Embeddings for `texts`, L2-normalised, batched to the provider's input limit."""
        out: list[npt.NDArray[np.float32]] = []
        step = self._s.embedding_batch_size
        for start in range(0, len(texts), step):
            chunk = list(texts[start : start + step])
            record = CallRecord(kind="embeddings", model=self._s.embedding_model, purpose=purpose)
            usage.add(record)
            extra: dict[str, Any] = {}
            if self._s.embedding_dimensions:
                extra["dimensions"] = self._s.embedding_dimensions
            response = await self._call(
                record, self._client.embeddings.create, model=self._s.embedding_model, input=chunk, **extra
            )
            record.prompt_tokens = response.usage.prompt_tokens if response.usage else 0
            vectors = np.asarray([d.embedding for d in sorted(response.data, key=lambda d: d.index)], np.float32)
            out.append(vectors)
        if not out:
            return np.zeros((0, self._s.embedding_dimensions or 1), np.float32)
        matrix = np.vstack(out)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised

    async def image_png(self, prompt: str, size: str, quality: str, purpose: str, usage: Usage) -> bytes:
        record = CallRecord(kind="image", model=self._s.image_model, purpose=purpose)
        usage.add(record)
        response = await self._call(
            record,
            self._client.images.generate,
            model=self._s.image_model,
            prompt=prompt,
            size=size,
            quality=quality,
            n=1,
        )
        if not response.data or not response.data[0].b64_json:
            record.ok, record.error = False, "provider returned no image data"
            raise AiError(record.error, transient=False)
        record.images = 1
        if response.usage is not None:
            record.prompt_tokens = getattr(response.usage, "input_tokens", 0) or 0
            record.completion_tokens = getattr(response.usage, "output_tokens", 0) or 0
        return base64.b64decode(response.data[0].b64_json)
