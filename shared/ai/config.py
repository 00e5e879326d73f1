"""Which provider, model and timeout each AI function uses, resolved once from `Settings`.

Chat, embeddings and images each have their own base URL, key and model (`CONTENTLINE_CHAT_BASE_URL`, ...),
falling back to the common `OPENAI_BASE_URL` / `OPENAI_API_KEY`; chat models can be set per AI function
(`CONTENTLINE_IDEAS_MODEL`, ...). An `*_API_VERSION` makes that function an Azure OpenAI deployments client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from shared.settings import Settings

Function = Literal["chat", "embeddings", "images"]
FUNCTIONS: tuple[Function, ...] = ("chat", "embeddings", "images")

# Chat purposes that have their own model setting (the rest use chat_model).
PURPOSE_MODEL_SETTING = {
    "cluster-label": "cluster_label_model",
    "ideas": "ideas_model",
    "draft-frame": "draft_frame_model",
    "draft-section": "draft_section_model",
    "image-prompts": "image_prompts_model",
}
# A 512-input embeddings request can take most of a minute on a small local server; an image longer.
DEFAULT_TIMEOUTS: dict[Function, float] = {"chat": 60.0, "embeddings": 120.0, "images": 180.0}
# Longest wait between two attempts (backoff, or a provider's Retry-After up to this).
RETRY_WAIT_CAP = 30.0
# A timed-out attempt is re-sent with twice the timeout, up to this many times the configured one: a server
# that is slow (a small local model on shared cores) then finishes, where the same timeout again cannot.
TIMEOUT_GROWTH = 4
_ENV = {"chat": "CHAT", "embeddings": "EMBEDDING", "images": "IMAGE"}
_PREFIX: dict[Function, str] = {"chat": "chat", "embeddings": "embedding", "images": "image"}


@dataclass(frozen=True)
class Endpoint:
    function: Function
    base_url: str | None
    api_key: str = field(repr=False)
    api_version: str | None
    model: str
    timeout: float
    requests_per_minute: int
    tokens_per_minute: int
    concurrency: int

    @property
    def azure(self) -> bool:
        return self.api_version is not None

    @property
    def where(self) -> str:
        """Host (and port) of the provider, for failure reasons: never the key, never the path's secrets."""
        host = urlsplit(self.base_url).netloc if self.base_url else "api.openai.com"
        return f"{host} (Azure)" if self.azure else host

    @property
    def env(self) -> str:
        return f"CONTENTLINE_{_ENV[self.function]}"


def required_budget(timeout: float, attempts: int) -> float:
    """Time that `attempts` attempts of `timeout` each need, waits between them included."""
    return attempts * timeout + (attempts - 1) * RETRY_WAIT_CAP


def attempt_timeouts(timeout: float, attempts: int, scale: int = 1) -> list[float]:
    """Each attempt's timeout when every one times out: doubling from `scale` × `timeout`, capped."""
    return [timeout * min(scale * 2**i, TIMEOUT_GROWTH) for i in range(attempts)]


def grown_budget(timeout: float, attempts: int, scale: int = 1) -> float:
    """The derived retry budget: every attempt at its (grown) timeout, waits between them included."""
    return sum(attempt_timeouts(timeout, attempts, scale)) + (attempts - 1) * RETRY_WAIT_CAP


def endpoint(settings: Settings, function: Function) -> Endpoint:
    p = _PREFIX[function]
    base_url = getattr(settings, f"{p}_base_url") or settings.openai_base_url
    own_key = getattr(settings, f"{p}_api_key")
    key = (own_key.get_secret_value() if own_key is not None else "") or settings.openai_api_key.get_secret_value()
    timeout = getattr(settings, f"{p}_timeout_seconds") or settings.ai_timeout_seconds or DEFAULT_TIMEOUTS[function]
    return Endpoint(
        function=function,
        base_url=base_url,
        api_key=key,
        api_version=getattr(settings, f"{p}_api_version"),
        model=getattr(settings, f"{p}_model"),
        timeout=float(timeout),
        requests_per_minute=getattr(settings, f"{p}_requests_per_minute"),
        tokens_per_minute=getattr(settings, f"{p}_tokens_per_minute", 0),
        concurrency=getattr(settings, f"{p}_max_concurrency") or settings.ai_max_concurrency,
    )


def chat_model(settings: Settings, purpose: str) -> str:
    name = PURPOSE_MODEL_SETTING.get(purpose)
    specific: str | None = getattr(settings, name) if name else None
    return specific or settings.chat_model


def retry_budget(settings: Settings, ep: Endpoint, scale: int = 1) -> float:
    """CONTENTLINE_AI_RETRY_BUDGET_SECONDS, or derived so every attempt gets its timeout (grown after timeouts)."""
    return settings.ai_retry_budget_seconds or grown_budget(ep.timeout, settings.ai_max_attempts, scale)


def problems(settings: Settings) -> list[str]:
    """Configuration that cannot work, each with its fix."""
    found: list[str] = []
    for function in FUNCTIONS:
        ep = endpoint(settings, function)
        if not ep.api_key and not ep.base_url:
            found.append(
                f"no provider for {function}: set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible "
                f"server such as vLLM, Ollama or the project's fakeai), or {ep.env}_BASE_URL / {ep.env}_API_KEY"
            )
        if ep.azure and not ep.base_url:
            found.append(f"{ep.env}_API_VERSION is set (Azure OpenAI) but no endpoint: set {ep.env}_BASE_URL")
        needed = required_budget(ep.timeout, settings.ai_max_attempts)
        if settings.ai_retry_budget_seconds is not None and settings.ai_retry_budget_seconds < needed:
            found.append(
                f"CONTENTLINE_AI_RETRY_BUDGET_SECONDS={settings.ai_retry_budget_seconds:g} cannot fit "
                f"CONTENTLINE_AI_MAX_ATTEMPTS={settings.ai_max_attempts} attempts of the {function} timeout "
                f"{ep.timeout:g} s (needs at least {needed:g} s): raise it, lower the attempts or the timeout, "
                "or leave it unset to derive it"
            )
    return found
