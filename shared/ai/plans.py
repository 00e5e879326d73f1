"""How a provider wants its requests, learnt from what it refuses; and the plumbing of one request.

`ChatPlan` starts from the settings (response format, token-limit parameter) and changes for good when the
provider answers a 400 naming a parameter: `max_tokens` <-> `max_completion_tokens`, no `temperature`,
`json_schema` -> `json_object` -> none, schema length/item keywords left out (the prompt still names them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.ai import schema
from shared.ai.errors import Failure


def bind_call(fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await fn(**kwargs)

    return call


class AttemptsFailed(Exception):
    def __init__(self, failure: Failure, retry_after: float | None = None) -> None:
        super().__init__(failure.text())
        self.failure = failure
        self.retry_after = retry_after


@dataclass
class ChatPlan:
    """How this provider wants chat requests; changed (for good) when it refuses a parameter."""

    response_format: str
    token_param: str
    send_temperature: bool = True
    dropped_keywords: frozenset[str] = frozenset()
    refused: set[str] = field(default_factory=set)

    def adapt(self, param: str) -> str | None:
        """Change the plan so `param` is not sent again; None when there is nothing left to change."""
        if param in self.refused:
            return None
        change: str | None = None
        if param == self.token_param == "max_tokens":
            self.token_param, change = "max_completion_tokens", "sending 'max_completion_tokens' instead"
        elif param == self.token_param == "max_completion_tokens":
            self.token_param, change = "max_tokens", "sending 'max_tokens' instead"
        elif param == "temperature" and self.send_temperature:
            self.send_temperature, change = False, "leaving 'temperature' out"
        elif param in ("response_format", "json_schema") and self.response_format != "none":
            self.response_format = "json_object" if self.response_format == "json_schema" else "none"
            change = f"response format {self.response_format}"
        elif param in schema.LENGTH_KEYWORDS | schema.ITEM_KEYWORDS:
            group = schema.LENGTH_KEYWORDS if param in schema.LENGTH_KEYWORDS else schema.ITEM_KEYWORDS
            if not group <= self.dropped_keywords:
                self.dropped_keywords |= group
                change = f"leaving {'/'.join(sorted(group))} out of the schema (still named in the prompt)"
        if change:
            self.refused.add(param)
        return change


@dataclass
class OptionalParams:
    """Parameters of embeddings/images that a provider may refuse: sent until it does."""

    send: dict[str, bool] = field(
        default_factory=lambda: {"dimensions": True, "encoding_format": True, "quality": True}
    )
