"""The AI boundary: the one package that talks to the `openai` SDK (see client.py for the rules).

config.py   which provider, model and timeout each function (chat, embeddings, images) uses
client.py   AiClient: requests, transient retries, re-asks that change the request, parameter fallbacks
plans.py    what a provider refused, remembered (ChatPlan)
schema.py   structured output: response formats, the schema as prompt text, tolerant parsing, repair
budgets.py  max_tokens sized to what a reply should produce
limits.py   requests/tokens per minute per provider, following Retry-After and x-ratelimit-* headers
language.py is a reply in the site's language?
errors.py   every failure named (FailureKind), AiError / EmbeddingDimensionError
usage.py    CallRecord / Usage: one record per request, failed ones included
"""

from shared.ai.client import AiClient
from shared.ai.errors import AiError, EmbeddingDimensionError, FailureKind
from shared.ai.usage import CallRecord, Usage

__all__ = ["AiClient", "AiError", "CallRecord", "EmbeddingDimensionError", "FailureKind", "Usage"]
