"""Usage records: one per request sent (re-asks included), stored as `ai_calls` rows with the results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallRecord:
    kind: str  # chat|embeddings|image
    model: str
    purpose: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    attempts: int = 0  # HTTP attempts of this request (transient retries included)
    ok: bool = True
    error: str | None = None
    ms: int = 0
    # What became of the request: "ok" or a FailureKind value (cut_off, invalid_json, timeout, ...).
    outcome: str = "ok"
    finish_reason: str | None = None
    max_tokens: int | None = None  # the output budget sent (chat)

    def fail(self, outcome: str, error: str) -> None:
        self.ok, self.outcome, self.error = False, outcome, error

    def columns(self) -> dict[str, Any]:
        """The `ai_calls` columns this record fills."""
        return {
            "kind": self.kind,
            "model": self.model[:100],
            "purpose": self.purpose[:60],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "images": self.images,
            "attempts": self.attempts,
            "ok": self.ok,
            "error": self.error,
            "ms": self.ms,
            "outcome": self.outcome[:30],
            "finish_reason": (self.finish_reason or None) and str(self.finish_reason)[:30],
            "max_tokens": self.max_tokens,
        }


@dataclass
class Usage:
    records: list[CallRecord] = field(default_factory=list)

    def add(self, record: CallRecord) -> None:
        self.records.append(record)
