"""Fault-injection knobs: env ``FAKEAI_*`` at start-up, ``POST /_fake/config`` at runtime."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from fakeai.faults import FaultRule

ResponseFormat = Literal["json_schema", "json_object", "text"]
EmbeddingEncoding = Literal["float", "base64"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("json_schema", "json_object", "text")


class FakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FAKEAI_", extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=60_000, description="Added to every /v1 call (asyncio.sleep).")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of /v1 calls failing with 429 or 500.")
    malformed_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of JSON chat replies made invalid.")
    malformed_if_prompt_contains: str | None = Field(default=None, min_length=1)
    error_if_prompt_contains: str | None = Field(default=None, min_length=1)
    rate_limit_per_second: float = Field(default=0.0, ge=0.0, description="Token bucket per process; 0 disables.")
    seed: int = Field(default=0, description="Seeds the random.Random behind error_rate/malformed_rate.")
    strict_schema_check: bool = Field(
        default=True, description="Reject strict json_schema formats the real API would refuse (400)."
    )

    # What a real server does with a reply's token limit: stop there, with finish_reason "length".
    honour_max_tokens: bool = True
    faults: list[FaultRule] = Field(default_factory=list, description="Fault rules, see fakeai/faults.py.")
    reject_params: list[str] = Field(
        default_factory=list, description="Request fields answered with 400 unsupported_parameter, e.g. dimensions."
    )
    reject_schema_keywords: list[str] = Field(
        default_factory=list, description="json_schema keywords refused (400) the way a strict mode does: maxLength."
    )
    response_formats: list[ResponseFormat] = Field(
        default_factory=lambda: list(RESPONSE_FORMATS),
        description="response_format types this server accepts; others are a 400 (a JSON-mode-only server).",
    )
    context_tokens: int | None = Field(
        default=None, ge=16, description="Chat: refuse (400, vLLM's wording) when prompt + max_tokens exceed this."
    )
    embedding_encodings: list[EmbeddingEncoding] = Field(
        default_factory=lambda: list[EmbeddingEncoding](["float", "base64"]),
        description="Embeddings: encoding_format values accepted; another is a 400 naming encoding_format.",
    )
    embeddings_as_floats: bool = Field(
        default=False, description="Embeddings: answer with lists of floats whatever encoding_format asked."
    )
    native_dimensions: int | None = Field(
        default=None, ge=1, le=4096, description="Embeddings: ignore `dimensions` and return this size."
    )

    def updated(self, patch: dict[str, Any]) -> FakeSettings:
        """Validated copy with ``patch`` applied; raises ``pydantic.ValidationError``."""
        # Checked by hand: BaseSettings.__init__ would silently consume keys like "_env_file".
        unknown = [key for key in patch if key not in type(self).model_fields]
        if unknown:
            errors = [InitErrorDetails(type="extra_forbidden", loc=(key,), input=patch[key]) for key in unknown]
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        # Init kwargs take priority over env vars, so this re-validates every field.
        return FakeSettings(**{**self.model_dump(), **patch})
