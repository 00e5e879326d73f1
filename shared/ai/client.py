"""The one place that talks to the `openai` SDK: chat (structured), embeddings, images.

Per request: wait for the provider's limits (not counted as an attempt), then up to `ai_max_attempts`
attempts of the function's timeout each; only transient failures (timeouts, connection errors, 429, 5xx
but 501) are re-sent, with jittered backoff that honours Retry-After (tenacity). A timed-out attempt is
re-sent with twice the timeout (up to TIMEOUT_GROWTH times the configured one), and the client keeps the
grown timeout for that function: the same timeout again cannot succeed against a slow server, and a server
that was slow once stays slow. The retry budget is derived so every attempt gets its full timeout. A 400
that names an unsupported parameter is re-sent once without it (or with its alternative) and the provider
is remembered as not supporting it.

Per structured reply: up to `ai_invalid_output_attempts` asks, each CHANGING the request: a reply cut off
by the token limit is asked again once with twice the budget; an invalid, empty or wrong-language reply is
answered with a repair message that quotes the problem and names the fields. Refusals and content filters
are final. Every request, failed or not, leaves a `CallRecord` with its tokens, outcome and finish reason.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import openai
from openai import AsyncAzureOpenAI, AsyncOpenAI
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from shared.ai import budgets, language, schema
from shared.ai.config import (
    FUNCTIONS,
    RETRY_WAIT_CAP,
    TIMEOUT_GROWTH,
    Endpoint,
    Function,
    chat_model,
    endpoint,
    problems,
    retry_budget,
)
from shared.ai.errors import (
    AiError,
    EmbeddingDimensionError,
    Failure,
    FailureKind,
    classify,
    clip,
    context_room,
    retry_after_seconds,
)
from shared.ai.limits import ProviderLimiter
from shared.ai.metering import metered
from shared.ai.plans import AttemptsFailed, ChatPlan, OptionalParams, bind_call
from shared.ai.schema import ReplyProblem
from shared.ai.usage import CallRecord, Usage
from shared.settings import Settings
from shared.text import repetition_loop

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)

_REFUSAL_TEXT = re.compile(
    r"^\W*(I'?m sorry|I am sorry|sorry, (but )?I|I can(no|')t (help|assist|do|provide|comply)|I cannot|I won'?t|"
    r"I'?m (not able|unable)|I am (not able|unable)|As an AI)",
    re.I,
)
_FINAL = frozenset({FailureKind.REFUSAL, FailureKind.CONTENT_FILTER})
MAX_ADAPTATIONS = 3  # parameter drops per request: enough for token param + format + temperature
CONTEXT_MARGIN = 16  # tokens kept free when shrinking a budget to the context's room


def vector_of(embedding: Any) -> npt.NDArray[np.float32]:
    """One embedding as float32: base64 of little-endian float32 (what was asked for), or a list of numbers
    (what a provider that ignores the format sends)."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError(f"base64 vector of {len(raw)} bytes is not float32")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return np.asarray(embedding, np.float32)


class AiClient:
    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._eps: dict[Function, Endpoint] = {f: endpoint(settings, f) for f in FUNCTIONS}
        self._sdks: dict[Function, AsyncOpenAI] = {}  # built on first use: the orchestrator never needs one
        self._limiters = {
            f: ProviderLimiter(ep.requests_per_minute, ep.tokens_per_minute) for f, ep in self._eps.items()
        }
        self._slots = {f: asyncio.Semaphore(ep.concurrency) for f, ep in self._eps.items()}
        self._timeout_scale: dict[Function, int] = dict.fromkeys(FUNCTIONS, 1)  # grown after timeouts
        self.chat_plan = ChatPlan(settings.chat_response_format, settings.chat_token_limit_param)
        self._optional = OptionalParams()
        self._dimensions_seen: dict[str, int] = {}

    # ---------------------------------------------------------------- set-up
    def check_configured(self) -> None:
        """Fail at start-up, with the fix in the message, rather than on the first model call."""
        found = problems(self._s)
        if found:
            raise RuntimeError("; ".join(found))

    def open_clients(self) -> None:
        """Start-up: check the settings and build the SDK clients now; building one imports the HTTP stack and
        makes a TLS context (~0.2 s of CPU), which the first batch of the first run would otherwise wait for."""
        self.check_configured()
        for function in FUNCTIONS:
            self._sdk(function)
        if self._s.ai_language_check:
            language.detector()  # its model now: 0.4 s of CPU, else in the first reply's check

    def endpoint(self, function: Function) -> Endpoint:
        return self._eps[function]

    def limiter(self, function: Function) -> ProviderLimiter:
        return self._limiters[function]

    def _sdk(self, function: Function) -> AsyncOpenAI:
        sdk = self._sdks.get(function)
        if sdk is None:
            self.check_configured()
            ep = self._eps[function]
            if ep.azure:
                # Azure OpenAI deployments API: <endpoint>/openai/deployments/<model>/...?api-version=...,
                # key in the api-key header; the model setting is the deployment name.
                sdk = AsyncAzureOpenAI(
                    azure_endpoint=ep.base_url or "",
                    api_version=ep.api_version,
                    api_key=ep.api_key,
                    timeout=ep.timeout * TIMEOUT_GROWTH,  # each attempt's own timeout is enforced in _send
                    max_retries=0,
                )
            else:
                # Local OpenAI-compatible servers often need no key, but the SDK insists on one. SDK retries
                # off: ours are budgeted and recorded per call.
                sdk = AsyncOpenAI(
                    api_key=ep.api_key or "unused",
                    base_url=ep.base_url,
                    timeout=ep.timeout * TIMEOUT_GROWTH,  # each attempt's own timeout is enforced in _send
                    max_retries=0,
                )
            self._sdks[function] = sdk
        return sdk

    async def close(self) -> None:
        for sdk in self._sdks.values():
            await sdk.close()
        self._sdks.clear()

    # ---------------------------------------------------------------- one request, transient retries
    async def _send(
        self,
        function: Function,
        record: CallRecord,
        call: Callable[[], Awaitable[Any]],
        tokens: int,
        sent: set[str],
    ) -> Any:
        ep = self._eps[function]
        limiter = self._limiters[function]
        budget: float = retry_budget(self._s, ep, self._timeout_scale[function])
        attempts = self._s.ai_max_attempts
        queued = 0.0
        started = time.perf_counter()
        backoff = wait_exponential_jitter(max=8.0)  # 1 s, 2 s, 4 s... plus up to 1 s of jitter

        def stop(state: RetryCallState) -> bool:
            # Waiting for the provider's limits or a free slot is not the attempts' time.
            return state.attempt_number >= attempts or (state.seconds_since_start or 0.0) - queued > budget

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = exc.retry_after if isinstance(exc, AttemptsFailed) else None
            return min(max(backoff(state), hint or 0.0), RETRY_WAIT_CAP)

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, AttemptsFailed) and exc.failure.transient

        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception(transient), stop=stop, wait=wait, reraise=True):
                with attempt:
                    record.attempts += 1
                    waited = time.monotonic()
                    await limiter.acquire(tokens)
                    async with self._slots[function]:
                        queued += time.monotonic() - waited
                        scale = self._timeout_scale[function]
                        timeout = ep.timeout * scale
                        try:
                            async with asyncio.timeout(timeout):
                                raw = await call()
                        except (TimeoutError, openai.OpenAIError) as exc:
                            failure = classify(exc, sent)
                            hint = None
                            if isinstance(exc, openai.APIStatusError):
                                limiter.observe(exc.response.headers, exc.status_code)
                                hint = retry_after_seconds(exc.response.headers)
                            if failure.kind is FailureKind.TIMEOUT:
                                failure.detail = f"no reply within {timeout:g} s"
                                grown = min(scale * 2, TIMEOUT_GROWTH)
                                if grown > self._timeout_scale[function]:
                                    self._timeout_scale[function] = grown
                                    log.warning(
                                        "%s provider at %s: no reply within %g s; timeout %g s from now on",
                                        function,
                                        ep.where,
                                        timeout,
                                        ep.timeout * grown,
                                    )
                            raise AttemptsFailed(failure, hint) from exc
                    limiter.observe(raw.headers)
                    return raw
        finally:
            record.ms += int((time.perf_counter() - started) * 1000)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, purpose: str, function: Function, model: str, record: CallRecord, failure: Failure) -> AiError:
        ep = self._eps[function]
        tries = f" after {record.attempts} attempts" if failure.transient else ""
        param = f" {failure.parameter!r}" if failure.parameter else ""
        where = f"{function} model {model} at {ep.where}, timeout {ep.timeout:g} s"
        hint = ""
        if failure.kind is FailureKind.UNSUPPORTED_PARAMETER:
            hint = " (not retried: nothing left to leave out)"
        reason = f"{purpose}: {failure.kind.label}{param}{tries} [{where}]{hint}: {failure.detail}".rstrip(": ")
        record.fail(failure.kind.value, clip(f"{failure.kind.label}{param}{tries}: {failure.detail}"))
        return AiError(reason, transient=failure.transient, kind=failure.kind)

    # ---------------------------------------------------------------- chat, structured
    def _chat_request(
        self, model: str, messages: list[dict[str, str]], out: type[BaseModel], budget: int, temperature: float | None
    ) -> tuple[dict[str, Any], set[str]]:
        plan = self.chat_plan
        kwargs: dict[str, Any] = {"model": model, "messages": messages, plan.token_param: budget}
        sent = {plan.token_param}
        if temperature is not None and plan.send_temperature:
            kwargs["temperature"] = temperature
            sent.add("temperature")
        fmt = schema.response_format(out, plan.response_format, plan.dropped_keywords)
        if fmt is not None:
            kwargs["response_format"] = fmt
            sent.add("response_format")
            if fmt["type"] == "json_schema":
                sent |= {"json_schema"} | (schema.LENGTH_KEYWORDS | schema.ITEM_KEYWORDS) - plan.dropped_keywords
        return kwargs, sent

    @metered
    async def structured(
        self,
        system: str,
        user: str,
        schema_model: type[T],
        purpose: str,
        usage: Usage,
        temperature: float | None = 0.7,
        *,
        max_tokens: int | None = None,
        language_name: str | None = None,
        check: Callable[[T], str | None] | None = None,
        soft_check: Callable[[T], str | None] | None = None,
        soft_loops: bool = False,
    ) -> T:
        """A chat reply parsed into `schema_model`; AiError (permanent) naming the problem when none is usable.

        `max_tokens`: the reply's budget (default: from the schema's bounds); `language_name`: the language
        the prose must be in (checked when `CONTENTLINE_AI_LANGUAGE_CHECK` is on); `check`: the caller's own
        test of a valid reply (e.g. "40 words for 300"), a problem it names is re-asked like any other.
        `soft_check`: re-asked the same way while asks are left, but the last reply is returned even with its
        problem (the caller's own gate judges the whole, e.g. the draft quality check that holds a draft back).
        `soft_loops`: a reply that loops is such a soft problem too (for a caller whose gate catches loops: a
        draft's section, held back with its reasons, rather than a failed item with nothing to look at).
        """
        model = chat_model(self._s, purpose)
        cap = self._s.chat_max_output_tokens
        budget = min(max_tokens or budgets.from_schema(schema_model, purpose), cap)
        first_budget = budget
        prompt = f"{user}\n\n{schema.describe(schema_model)}"
        base = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        messages = base
        found: list[ReplyProblem] = []
        asks = adaptations = 0
        grown = False
        usable: T | None = None  # the last reply whose only problem was a soft one
        sdk = self._sdk("chat")
        while True:
            record = CallRecord(kind="chat", model=model, purpose=purpose, max_tokens=budget)
            usage.add(record)
            kwargs, sent = self._chat_request(model, messages, schema_model, budget, temperature)
            estimate = budgets.prompt_tokens(messages) + budget
            try:
                raw = await self._send(
                    "chat", record, bind_call(sdk.chat.completions.with_raw_response.create, kwargs), estimate, sent
                )
            except AttemptsFailed as failed:
                failure = failed.failure
                error = self._error(purpose, "chat", model, record, failure)
                room = context_room(failure.detail) if failure.kind is FailureKind.CONTEXT_TOO_LONG else None
                if room is not None and room - CONTEXT_MARGIN < budget and room - CONTEXT_MARGIN >= budgets.MIN_BUDGET:
                    # the prompt fits, the reply's budget did not: ask for what the context has room for, once
                    budget = first_budget = room - CONTEXT_MARGIN
                    log.warning("%s: %s; asking for max_tokens=%d", purpose, failure.detail, budget)
                    continue
                adaptable = failure.kind is FailureKind.UNSUPPORTED_PARAMETER and adaptations < MAX_ADAPTATIONS
                if adaptable and failure.parameter:
                    change = self.chat_plan.adapt(failure.parameter)
                    if change:
                        adaptations += 1
                        log.warning(
                            "chat provider at %s refused %r: %s from now on",
                            self._eps["chat"].where,
                            failure.parameter,
                            change,
                        )
                        continue
                raise error from failed
            asks += 1
            content = ""
            try:
                completion = raw.parse()
                content = self._reply_text(completion, record)
                parsed = await self._read(completion, content, schema_model, record, budget, language_name)
                if check is not None and (missed := check(parsed)):
                    raise ReplyProblem(FailureKind.OFF_TARGET, missed)
                last_ask = asks >= self._s.ai_invalid_output_attempts
                if soft_check is not None and not last_ask and (missed := soft_check(parsed)):
                    usable = parsed
                    raise ReplyProblem(FailureKind.OFF_TARGET, missed)
                return parsed
            except ReplyProblem as problem:
                if soft_loops and problem.kind is FailureKind.REPETITION and isinstance(problem.reply, schema_model):
                    usable = problem.reply
                found.append(problem)
                outcome = f"{problem.kind.label}: {problem.detail}"
                if problem.kind in (FailureKind.INVALID_JSON, FailureKind.SCHEMA_VIOLATION):
                    outcome = f"invalid structured output ({outcome})"
                record.fail(problem.kind.value, clip(outcome))
                where = f"chat model {model} at {self._eps['chat'].where}"
                if problem.kind in _FINAL:
                    raise AiError(
                        f"{purpose}: {problem.kind.label} [{where}]: {problem.detail}", False, problem.kind
                    ) from problem
                if problem.kind is FailureKind.CUT_OFF and (grown or budget >= cap):
                    if usable is not None:
                        return usable
                    raise AiError(
                        f"{purpose}: {problem.kind.label} even at max_tokens={budget} (first {first_budget}) "
                        f"[{where}]: the model does not stop; {problem.detail}",
                        False,
                        problem.kind,
                    ) from problem
                if asks >= self._s.ai_invalid_output_attempts:
                    if usable is not None:  # an earlier reply had only a soft problem: the caller judges it
                        return usable
                    kinds = ", ".join(p.kind.label for p in found)
                    raise AiError(
                        f"{purpose}: invalid output after {asks} attempts ({kinds}) [{where}]; "
                        f"last: {problem.kind.label}: {problem.detail}",
                        False,
                        problem.kind,
                    ) from problem
                if problem.kind is FailureKind.CUT_OFF:
                    budget, grown = min(budget * 2, cap), True
                else:
                    repair = [{"role": "assistant", "content": clip(content, 1500)}] if content.strip() else []
                    messages = [
                        *base,
                        *repair,
                        {"role": "user", "content": schema.repair_prompt(problem, schema_model, language_name)},
                    ]

    @staticmethod
    def _reply_text(completion: Any, record: CallRecord) -> str:
        if completion.usage is not None:
            record.prompt_tokens = completion.usage.prompt_tokens or 0
            record.completion_tokens = completion.usage.completion_tokens or 0
        if not completion.choices:
            raise ReplyProblem(FailureKind.EMPTY, "the reply had no choices")
        choice = completion.choices[0]
        record.finish_reason = choice.finish_reason
        message = choice.message
        if getattr(message, "refusal", None):
            raise ReplyProblem(FailureKind.REFUSAL, clip(str(message.refusal), 200))
        if choice.finish_reason == "content_filter":
            raise ReplyProblem(FailureKind.CONTENT_FILTER, "finish_reason=content_filter")
        return str(message.content or "")

    async def _read(
        self, completion: Any, content: str, out: type[T], record: CallRecord, budget: int, language_name: str | None
    ) -> T:
        if completion.choices[0].finish_reason == "length":
            cut = ReplyProblem(
                FailureKind.CUT_OFF,
                f"{self.chat_plan.token_param}={budget}, finish_reason=length after {record.completion_tokens} "
                "completion tokens",
            )
            try:  # a reply that ended exactly at the limit may still be whole: no need to ask again
                whole = schema.validate(out, schema.extract_json(content)) if content.strip() else None
            except ReplyProblem:
                whole = None
            if whole is None:
                raise cut
        if not content.strip():
            raise ReplyProblem(FailureKind.EMPTY, f"finish_reason={record.finish_reason}, no content")
        try:
            data = schema.extract_json(content)
        except ReplyProblem:
            if _REFUSAL_TEXT.search(content):
                raise ReplyProblem(FailureKind.REFUSAL, clip(content, 200)) from None
            raise
        parsed = schema.validate(out, data)
        # Before the language check: a looping text reads as any language ("Coffee Grinder, Coffee Grinder, …"
        # was judged German by langdetect), and the loop is what the repair prompt must name.
        if loop := next(filter(None, map(repetition_loop, schema.strings(data))), None):
            raise ReplyProblem(FailureKind.REPETITION, f"{loop!r}…", reply=parsed)
        if language_name and self._s.ai_language_check:
            wrong = await asyncio.to_thread(language.mismatch, data, language_name)
            if wrong:
                raise ReplyProblem(FailureKind.WRONG_LANGUAGE, wrong)
        return parsed

    # ---------------------------------------------------------------- embeddings
    @metered
    async def embed(
        self, texts: Sequence[str], purpose: str, usage: Usage, *, expected_dimensions: int | None = None
    ) -> npt.NDArray[np.float32]:
        """Embeddings for `texts`, L2-normalised, batched to the provider's input limit.

        The batches are requested side by side (the function's concurrency slots bound them): a site's first
        clustering embeds thousands of keywords at once and waits for the slowest request, not their sum.
        Vectors of another size than `CONTENTLINE_EMBEDDING_DIMENSIONS`, than `expected_dimensions` (the size
        the caller already stores, e.g. a site's centroids) or than this model returned before raise
        `EmbeddingDimensionError`: vectors of mixed sizes are never handed out to be stored side by side.
        """
        configured = self._s.embedding_dimensions
        step = self._s.embedding_batch_size
        chunks = [list(texts[start : start + step]) for start in range(0, len(texts), step)]
        # Each task records its request before its first await: usage keeps the requests' order.
        tasks = [asyncio.create_task(self._embed_chunk(c, purpose, usage)) for c in chunks]
        try:
            replies = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one batch failed: the others' vectors could not be used
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if not replies:
            return np.zeros((0, expected_dimensions or configured or 1), np.float32)
        out, records = [m for m, _ in replies], [r for _, r in replies]
        matrix = np.vstack(out) if len({m.shape[1] for m in out}) == 1 else None
        if matrix is None:
            got = sorted({m.shape[1] for m in out})
            raise self._dimension_error(purpose, records[-1], got[0], got[-1], "batches came back in mixed sizes")
        self._check_dimensions(purpose, records[-1], matrix.shape[1], configured, expected_dimensions)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised

    async def _embed_chunk(
        self, chunk: list[str], purpose: str, usage: Usage
    ) -> tuple[npt.NDArray[np.float32], CallRecord]:
        """One embeddings request. Vectors come as base64 float32 (a quarter of the JSON of decimal floats, and
        decoded by numpy instead of parsed number by number) unless the provider refuses that; a provider that
        ignores the format and sends floats is read as well."""
        ep = self._eps["embeddings"]
        configured = self._s.embedding_dimensions
        sdk = self._sdk("embeddings")
        adaptations = 0
        while True:
            record = CallRecord(kind="embeddings", model=ep.model, purpose=purpose)
            usage.add(record)
            encoding = "base64" if self._optional.send["encoding_format"] else "float"
            kwargs: dict[str, Any] = {"model": ep.model, "input": chunk, "encoding_format": encoding}
            if configured and self._optional.send["dimensions"]:
                kwargs["dimensions"] = configured
            estimate = sum(len(t) for t in chunk) // 4 + 1
            try:
                raw = await self._send(
                    "embeddings",
                    record,
                    bind_call(sdk.embeddings.with_raw_response.create, kwargs),
                    estimate,
                    set(kwargs) - {"model", "input"},
                )
                break
            except asyncio.CancelledError:  # another batch of the request failed (or the worker stops)
                record.fail("cancelled", "cancelled before its reply: the request failed or was stopped")
                raise
            except AttemptsFailed as failed:
                error = self._error(purpose, "embeddings", ep.model, record, failed.failure)
                if self._drop_optional(failed.failure, "embeddings") and adaptations < 2:
                    adaptations += 1
                    continue
                raise error from failed
        response = raw.parse()
        record.prompt_tokens = response.usage.prompt_tokens if response.usage else 0
        try:
            rows = [vector_of(d.embedding) for d in sorted(response.data, key=lambda d: d.index)]
        except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
            failure = Failure(FailureKind.NO_DATA, f"unreadable vector: {exc}")
            raise self._error(purpose, "embeddings", ep.model, record, failure) from exc
        if len(rows) != len(chunk):
            failure = Failure(FailureKind.NO_DATA, f"{len(rows)} vectors for {len(chunk)} inputs")
            raise self._error(purpose, "embeddings", ep.model, record, failure)
        sizes = sorted({len(r) for r in rows})
        if len(sizes) > 1:
            raise self._dimension_error(purpose, record, sizes[0], sizes[-1], "one reply mixed vector sizes")
        return (np.vstack(rows) if rows else np.zeros((0, configured or 1), np.float32)), record

    def _check_dimensions(
        self, purpose: str, record: CallRecord, got: int, configured: int | None, expected: int | None
    ) -> None:
        model = self._eps["embeddings"].model
        if configured and got != configured:
            ignored = "" if self._optional.send["dimensions"] else " (the provider refused 'dimensions')"
            raise self._dimension_error(
                purpose,
                record,
                configured,
                got,
                f"CONTENTLINE_EMBEDDING_DIMENSIONS is {configured}{ignored}: set it to {got} or leave it unset",
            )
        if expected and got != expected:
            raise self._dimension_error(
                purpose,
                record,
                expected,
                got,
                "the vectors already stored have the other size: re-embed with one model and size, never mix",
            )
        seen = self._dimensions_seen.setdefault(model, got)
        if seen != got:
            raise self._dimension_error(purpose, record, seen, got, "earlier replies of this model had the other size")

    def _dimension_error(self, purpose: str, record: CallRecord, expected: int, got: int, why: str) -> AiError:
        ep = self._eps["embeddings"]
        reason = (
            f"{purpose}: {FailureKind.DIMENSION_MISMATCH.label}: {ep.model} at {ep.where} returned {got} "
            f"dimensions, expected {expected}; {why}"
        )
        record.fail(FailureKind.DIMENSION_MISMATCH.value, clip(reason))
        return EmbeddingDimensionError(reason, expected=expected, got=got, model=ep.model)

    def _drop_optional(self, failure: Failure, function: Function) -> bool:
        param = failure.parameter
        if failure.kind is not FailureKind.UNSUPPORTED_PARAMETER or param not in self._optional.send:
            return False
        if not self._optional.send[param]:
            return False
        self._optional.send[param] = False
        where = self._eps[function].where
        log.warning("%s provider at %s refused %r: leaving it out from now on", function, where, param)
        return True

    # ---------------------------------------------------------------- images
    @metered
    async def image_png(self, prompt: str, size: str, quality: str, purpose: str, usage: Usage) -> bytes:
        ep = self._eps["images"]
        sdk = self._sdk("images")
        adaptations = 0
        while True:
            record = CallRecord(kind="image", model=ep.model, purpose=purpose)
            usage.add(record)
            kwargs: dict[str, Any] = {"model": ep.model, "prompt": prompt, "size": size, "n": 1}
            if self._optional.send["quality"]:
                kwargs["quality"] = quality
            try:
                raw = await self._send(
                    "images",
                    record,
                    bind_call(sdk.images.with_raw_response.generate, kwargs),
                    math.ceil(len(prompt) / 4),
                    set(kwargs) - {"model", "prompt"},
                )
                break
            except AttemptsFailed as failed:
                error = self._error(purpose, "images", ep.model, record, failed.failure)
                if self._drop_optional(failed.failure, "images") and adaptations < 1:
                    adaptations += 1
                    continue
                raise error from failed
        response = raw.parse()
        if response.usage is not None:
            record.prompt_tokens = getattr(response.usage, "input_tokens", 0) or 0
            record.completion_tokens = getattr(response.usage, "output_tokens", 0) or 0
        if not response.data or not response.data[0].b64_json:
            detail = "a URL instead of image data" if response.data and response.data[0].url else "no image data"
            raise self._error(purpose, "images", ep.model, record, Failure(FailureKind.NO_DATA, detail))
        record.images = 1
        return base64.b64decode(response.data[0].b64_json)
