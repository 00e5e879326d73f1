"""Fault rules: what real providers and real models do to a request, on demand.

A rule (`POST /_fake/config {"faults": [...]}`) hits every request it matches, globally or per request:
`endpoint` (chat, embeddings, images), `if_prompt_contains` (a marker in the prompt) or `if_prompt_matches`
(a regex), `if_param` (the
request carries that field, e.g. `dimensions`), and `times` (only the first N matches; then it is spent).

Kinds, each as the real thing looks on the wire:
- reply faults (chat): `cut_off` (finish_reason "length", content cut mid-JSON), `invalid_json`,
  `schema_violation` (a required field missing), `empty`, `refusal` (the `refusal` field, content null),
  `refusal_text` (an apology as the content), `wrong_language` (prose in German), `fenced` (the JSON in a
  ```json fence, as many local models write it; not an error), `placeholder` (schema-valid junk a small model
  writes: every prose value becomes template leftovers and field names, `[Insert ...]`, `LARGE_30`,
  `section_description`, at the original length, so only a quality check can tell), `phrase_loop` (every prose
  value becomes one phrase said over and over, as SmolLM2 writes "Coffee Grinder, Coffee Grinder, …");
- request faults (any endpoint): `unsupported_parameter` (400 with `param` and code unsupported_parameter),
  `not_supported` (501), `rate_limit` (429 with Retry-After and x-ratelimit-* headers), `server_error` (500),
  `slow` (`delay_ms` before answering).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

Kind = Literal[
    "cut_off",
    "invalid_json",
    "schema_violation",
    "empty",
    "refusal",
    "refusal_text",
    "wrong_language",
    "fenced",
    "placeholder",
    "phrase_loop",
    "unsupported_parameter",
    "not_supported",
    "rate_limit",
    "server_error",
    "slow",
]
REPLY_KINDS = frozenset(
    {"cut_off", "invalid_json", "schema_violation", "empty", "refusal", "refusal_text", "wrong_language", "fenced",
     "placeholder", "phrase_loop"}
)  # fmt: skip
REFUSAL = "I'm sorry, but I can't help with that request."

_GERMAN = (
    "Dieser Abschnitt erklärt die wichtigsten Punkte in einfachen Worten und mit praktischen Beispielen.",
    "Wer sich zum ersten Mal mit dem Thema beschäftigt, sollte zuerst die Grundlagen verstehen.",
    "Danach lohnt es sich, die eigenen Ziele aufzuschreiben und die Möglichkeiten zu vergleichen.",
    "Viele Leser fragen sich, welche Lösung für den Alltag am besten geeignet ist.",
    "Eine gute Planung spart später Zeit, Geld und unnötigen Ärger.",
    "Am Ende zählt, dass die Entscheidung zu den eigenen Bedürfnissen passt.",
)


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    endpoint: Literal["chat", "embeddings", "images"] | None = None
    if_prompt_contains: str | None = Field(default=None, min_length=1)
    if_prompt_matches: str | None = Field(default=None, min_length=1, description="A regex (re.S) on the prompt.")
    if_param: str | None = Field(default=None, min_length=1)
    times: int | None = Field(default=None, ge=1, description="Only the first N matching requests; then spent.")
    param: str = Field(default="dimensions", description="The parameter an unsupported_parameter 400 names.")
    retry_after: float = Field(default=1.0, ge=0, le=600, description="Seconds, for rate_limit.")
    delay_ms: int = Field(default=0, ge=0, le=600_000, description="For slow.")


def matches(rule: FaultRule, endpoint: str, prompt: str | None, params: set[str]) -> bool:
    if rule.endpoint is not None and rule.endpoint != endpoint:
        return False
    if rule.if_prompt_contains is not None and (prompt is None or rule.if_prompt_contains not in prompt):
        return False
    if rule.if_prompt_matches is not None and (prompt is None or not re.search(rule.if_prompt_matches, prompt, re.S)):
        return False
    return rule.if_param is None or rule.if_param in params


def error_response(rule: FaultRule, endpoint: str) -> JSONResponse | None:
    """The HTTP error a request fault answers with (None for reply faults and `slow`)."""

    def body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}

    if rule.kind == "unsupported_parameter":
        message = f"Unsupported parameter: '{rule.param}' is not supported with this model."
        return JSONResponse(
            body(message, "invalid_request_error", rule.param, "unsupported_parameter"), status_code=400
        )
    if rule.kind == "not_supported":
        return JSONResponse(body(f"{endpoint} is not supported by this server", "not_supported_error"), 501)
    if rule.kind == "rate_limit":
        wait = rule.retry_after
        headers = {
            "Retry-After": f"{wait:g}",
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{wait:g}s",
            "x-ratelimit-limit-tokens": "10000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": f"{wait:g}s",
        }
        return JSONResponse(
            body("Rate limit reached (fakeai fault rule)", "requests", code="rate_limit_exceeded"), 429, headers
        )
    if rule.kind == "server_error":
        return JSONResponse(body("The server had an error (fakeai fault rule)", "server_error"), 500)
    return None


def german(words: int) -> str:
    out: list[str] = []
    i = 0
    while sum(len(s.split()) for s in out) < max(words, 4):
        out.append(_GERMAN[i % len(_GERMAN)])
        i += 1
    return " ".join(out)


def map_prose(value: Any, rewrite: Callable[[str], str]) -> Any:
    """`value` with every prose string value (4+ words) rewritten; field names, labels and numbers kept."""
    if isinstance(value, str):
        return rewrite(value) if len(value.split()) >= 4 else value
    if isinstance(value, dict):
        return {k: map_prose(v, rewrite) for k, v in value.items()}
    if isinstance(value, list):
        return [map_prose(v, rewrite) for v in value]
    return value


def germanise(value: Any) -> Any:
    """Every sentence-like string value rewritten in German (field names and short labels kept)."""
    return map_prose(value, lambda text: german(len(text.split())))


_PLACEHOLDER = "[Insert section text here] section_description LARGE_30 {{topic}} TODO: write about the keyword here. "


def placeholder_text(original: str) -> str:
    """Template leftovers as long as `original` (so length bounds and word targets still hold)."""
    filler = _PLACEHOLDER * (len(original) // len(_PLACEHOLDER) + 1)
    return filler[: len(original)].rstrip() or original


def placeholders(value: Any) -> Any:
    """Every prose string value (4+ words) replaced by template leftovers; labels and numbers kept."""
    return map_prose(value, placeholder_text)


def looped(text: str) -> str:
    """`text`'s first two words said over and over, at its length in words."""
    words = text.split()
    return ", ".join([" ".join(words[:2]).strip(".,")] * (len(words) // 2))


def phrase_loop(value: Any) -> Any:
    """Every prose string value (4+ words) replaced by its first two words said over and over."""
    return map_prose(value, looped)


def drop_required(doc: Any) -> str:
    """A schema violation: the first field left out (or the wrong type where there is only one)."""
    if isinstance(doc, dict) and len(doc) > 1:
        first = next(iter(doc))
        return json.dumps({k: v for k, v in doc.items() if k != first}, ensure_ascii=False)
    if isinstance(doc, dict) and doc:
        return json.dumps({next(iter(doc)): 12345})
    return json.dumps([doc])


def truncate(text: str) -> str:
    """Broken JSON: the first 60 % of the document, so no parser takes it."""
    cut = text[: max(1, len(text) * 3 // 5)]
    try:
        json.loads(cut)
    except ValueError:
        return cut
    return cut + ","


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def cut_to(text: str, limit: int) -> str:
    """What a server sends when the token limit stops the model: the first `limit` tokens."""
    return text[: max(limit, 1) * 4]
