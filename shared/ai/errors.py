"""What can go wrong with a model call, each case with a name that reaches the item's failure reason.

`classify()` turns an SDK exception into a `Failure` (kind, detail, transient?, the parameter a 400 named);
`AiError` is what callers catch: `reason` is the text an `ItemFailure` records, starting with the call's
purpose and the failure's name so the first 200 characters of a run's activity line say what happened.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import openai


class FailureKind(StrEnum):
    # the reply
    CUT_OFF = "cut_off"
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    EMPTY = "empty"
    REFUSAL = "refusal"
    CONTENT_FILTER = "content_filter"
    WRONG_LANGUAGE = "wrong_language"
    REPETITION = "repetition_loop"
    OFF_TARGET = "off_target"
    DIMENSION_MISMATCH = "dimension_mismatch"
    NO_DATA = "no_data"
    # the request
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    NOT_SUPPORTED = "not_supported"
    UNSUPPORTED_PARAMETER = "unsupported_parameter"
    CONTEXT_TOO_LONG = "context_too_long"
    QUOTA = "quota"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    FailureKind.CUT_OFF: "reply cut off by the token limit",
    FailureKind.INVALID_JSON: "invalid JSON",
    FailureKind.SCHEMA_VIOLATION: "schema violation",
    FailureKind.EMPTY: "empty reply",
    FailureKind.REFUSAL: "the model refused",
    FailureKind.CONTENT_FILTER: "stopped by the provider's content filter",
    FailureKind.WRONG_LANGUAGE: "reply in the wrong language",
    FailureKind.REPETITION: "the reply loops",
    FailureKind.OFF_TARGET: "reply off target",
    FailureKind.DIMENSION_MISMATCH: "embedding dimension mismatch",
    FailureKind.NO_DATA: "no data in the reply",
    FailureKind.TIMEOUT: "timed out",
    FailureKind.CONNECTION: "connection failed",
    FailureKind.RATE_LIMITED: "rate limited (429)",
    FailureKind.SERVER_ERROR: "provider server error",
    FailureKind.NOT_SUPPORTED: "not supported by the provider (501)",
    FailureKind.UNSUPPORTED_PARAMETER: "unsupported parameter",
    FailureKind.CONTEXT_TOO_LONG: "prompt too long for the model's context",
    FailureKind.QUOTA: "provider quota exhausted",
    FailureKind.AUTH: "not authorised",
    FailureKind.NOT_FOUND: "not found (404)",
    FailureKind.BAD_REQUEST: "request refused (400)",
}

# Kinds a re-sent identical request can cure. Everything else is permanent: 400/401/403/404/422/501 and
# friends are answered the same way every time, so retrying them only burns the budget.
TRANSIENT_KINDS = frozenset(
    {FailureKind.TIMEOUT, FailureKind.CONNECTION, FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR}
)

# Request fields a 400 may name; schema keywords count as parameters too (OpenAI's strict mode refuses some).
SCHEMA_KEYWORDS = frozenset({"maxLength", "minLength", "maxItems", "minItems"})
KNOWN_PARAMETERS = (
    "max_completion_tokens",
    "max_tokens",
    "dimensions",
    "response_format",
    "json_schema",
    "temperature",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "quality",
    "size",
)
_UNSUPPORTED_WORDS = re.compile(
    r"unsupported|not supported|unrecognized|unrecognised|not permitted|not allowed|unknown (field|param|argument)|"
    r"extra (fields|inputs) not permitted|extra_forbidden|does not support|invalid parameter|must be one of",
    re.I,
)
_CONTEXT_WORDS = re.compile(
    r"context[_ ]length|maximum context|context window|context size|too many tokens|exceeds the context", re.I
)
_SCHEMA_WORDS = re.compile(r"json[_ ]?schema|grammar|response_format", re.I)
_CONTEXT_NUMBERS = re.compile(r"maximum context length is (\d+).*?(\d+) (?:tokens )?in the messages", re.I | re.S)
_FILTER_WORDS = re.compile(r"content[_ ]filter|ResponsibleAIPolicyViolation|content management policy", re.I)
MAX_REASON = 1000


def clip(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Failure:
    kind: FailureKind
    detail: str
    parameter: str | None = None  # for UNSUPPORTED_PARAMETER: the field the provider named
    status: int | None = None

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS

    def text(self) -> str:
        param = f" {self.parameter!r}" if self.parameter else ""
        return clip(f"{self.kind.label}{param}: {self.detail}" if self.detail else f"{self.kind.label}{param}")


class AiError(Exception):
    """A model call that failed for good; `reason` is what the item failure records."""

    def __init__(self, reason: str, transient: bool, kind: FailureKind | None = None) -> None:
        reason = clip(reason)
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.kind = kind

    def within(self, context: str) -> AiError:
        """The same failure, its reason led by where it happened (e.g. which section of a draft)."""
        return AiError(f"{context}: {self.reason}", self.transient, self.kind)


class EmbeddingDimensionError(AiError):
    """Vectors of another size than configured or already stored: never to be stored next to the others."""

    def __init__(self, reason: str, expected: int, got: int, model: str) -> None:
        super().__init__(reason, transient=False, kind=FailureKind.DIMENSION_MISMATCH)
        self.expected, self.got, self.model = expected, got, model


def _body_fields(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def unsupported_parameter(message: str, param: str | None, code: str | None, sent: set[str]) -> str | None:
    """The request field (or schema keyword) a 400 says the provider does not support, if it says so."""
    if code in ("unsupported_parameter", "unsupported_value") and param:
        return param
    if not _UNSUPPORTED_WORDS.search(message):
        return None
    # The name mentioned first wins: "'max_tokens' is not supported ... Use 'max_completion_tokens'" names the
    # first; "Invalid schema for response_format 'X': 'maxLength' is not permitted" is about the keyword.
    found: list[tuple[int, str]] = []
    for name in KNOWN_PARAMETERS:
        if name in sent or name in SCHEMA_KEYWORDS:
            match = re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message)
            if match:
                found.append((match.start(), name))
    if any(name in SCHEMA_KEYWORDS for _, name in found):
        return min((pos, name) for pos, name in found if name in SCHEMA_KEYWORDS)[1]
    if found:
        return min(found)[1]
    return param if param and param in sent else None


def classify(exc: BaseException, sent: set[str] | None = None) -> Failure:
    """Name an exception raised by an SDK call (or our own wall-clock timeout)."""
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return Failure(FailureKind.TIMEOUT, "")
    if isinstance(exc, openai.APIConnectionError):
        return Failure(FailureKind.CONNECTION, clip(str(exc), 300))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        fields = _body_fields(exc)
        message = str(fields.get("message") or exc.message or "")
        code = fields.get("code")
        param = fields.get("param")
        detail = clip(f"HTTP {status}: {message}", 500)
        if status == 429:
            kind = FailureKind.QUOTA if code == "insufficient_quota" else FailureKind.RATE_LIMITED
            return Failure(kind, detail, status=status)
        if status == 501:
            return Failure(FailureKind.NOT_SUPPORTED, detail, status=status)
        if status in (408, 409) or status >= 500:
            return Failure(FailureKind.SERVER_ERROR, detail, status=status)
        if status in (401, 403):
            return Failure(FailureKind.AUTH, detail, status=status)
        if status == 404:
            return Failure(FailureKind.NOT_FOUND, detail, status=status)
        if _FILTER_WORDS.search(message) or code == "content_filter":
            return Failure(FailureKind.CONTENT_FILTER, detail, status=status)
        kind_field = str(fields.get("type") or "")
        if _CONTEXT_WORDS.search(message) or code == "context_length_exceeded" or "exceed_context" in kind_field:
            return Failure(FailureKind.CONTEXT_TOO_LONG, detail, status=status)
        named = unsupported_parameter(
            message, param if isinstance(param, str) else None, code if isinstance(code, str) else None, sent or set()
        )
        if not named and "json_schema" in (sent or set()) and _SCHEMA_WORDS.search(message):
            named = "json_schema"  # a server that cannot turn our schema into its grammar: JSON mode will do
        if named:
            return Failure(FailureKind.UNSUPPORTED_PARAMETER, detail, parameter=named, status=status)
        return Failure(FailureKind.BAD_REQUEST, detail, status=status)
    if isinstance(exc, openai.OpenAIError):
        return Failure(FailureKind.BAD_REQUEST, clip(str(exc), 500))
    raise exc


def context_room(detail: str) -> int | None:
    """Tokens left for the reply when a 400 says prompt + max_tokens exceed the context (vLLM, OpenAI wording)."""
    m = _CONTEXT_NUMBERS.search(detail)
    return int(m.group(1)) - int(m.group(2)) if m else None


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After (seconds or HTTP date is not used by model APIs) or retry-after-ms, if the reply has one."""
    if headers is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        ms = headers.get("retry-after-ms")
        if ms:
            return float(ms) / 1000
    with contextlib.suppress(TypeError, ValueError):
        value = headers.get("retry-after")
        if value:
            return float(value)
    return None
