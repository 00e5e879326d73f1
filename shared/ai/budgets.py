"""How many tokens a reply may use: sized to what it should produce, so a looping model stops early.

English prose runs at ~1.3 tokens per word with OpenAI's and Llama's tokenizers, other languages up to
~2; `TOKENS_PER_WORD` (1.5) plus `SLACK` (room to finish the sentence) covers both without letting a
model that ignores the target run on for pages. JSON keys, quotes and escapes cost `JSON_OVERHEAD`.
A cut-off reply is asked again once with twice the budget (see client.py), so a tight budget costs one
re-ask, never the item.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from pydantic import BaseModel

from shared.ai.schema import json_schema

TOKENS_PER_WORD = 1.5
SLACK = 1.25
JSON_OVERHEAD = 48
CHARS_PER_TOKEN = 3.0  # bounded strings: characters to tokens, on the safe side for non-English text
UNBOUNDED_STRING_CHARS = 600  # a schema without maxLength (not ours): assume a paragraph
UNBOUNDED_LIST_ITEMS = 8
MIN_BUDGET = 96

# Calls whose schema lives outside this package and is not bounded (the clusterer's label).
PURPOSE_DEFAULTS = {"cluster-label": 400}


def prose(words: int, overhead: int = JSON_OVERHEAD) -> int:
    """Budget for `words` words of prose inside a JSON reply."""
    return math.ceil(max(words, 1) * TOKENS_PER_WORD * SLACK) + overhead


def chars(n: int) -> int:
    """Budget for `n` characters of bounded short text (titles, meta descriptions, prompts)."""
    return math.ceil(n / CHARS_PER_TOKEN)


def _max_chars(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> int:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        node = root["$defs"][ref.removeprefix("#/$defs/")]
    if depth > 8:
        return 0
    if "enum" in node:
        return max(len(str(v)) for v in node["enum"]) + 2
    for key in ("anyOf", "oneOf"):
        if key in node:
            return max(_max_chars(v, root, depth + 1) for v in node[key])
    kind = node.get("type", "object" if "properties" in node else "string")
    if kind == "string":
        return int(node.get("maxLength", UNBOUNDED_STRING_CHARS)) + 2
    if kind in ("integer", "number"):
        return 8
    if kind == "boolean":
        return 5
    if kind == "array":
        items = int(node.get("maxItems", UNBOUNDED_LIST_ITEMS))
        return 2 + items * (_max_chars(node.get("items", {}), root, depth + 1) + 2)
    if kind == "object":
        return 2 + sum(len(k) + 4 + _max_chars(v, root, depth + 1) for k, v in node.get("properties", {}).items())
    return 8


@cache
def from_schema(model: type[BaseModel], purpose: str = "") -> int:
    """The longest reply the schema's bounds allow, in tokens (callers with a word target pass their own)."""
    if purpose in PURPOSE_DEFAULTS:
        return PURPOSE_DEFAULTS[purpose]
    schema = json_schema(model)
    return max(MIN_BUDGET, chars(_max_chars(schema, schema)) + JSON_OVERHEAD)


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    """A rough count for the tokens-per-minute limiter (4 characters a token)."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages)
