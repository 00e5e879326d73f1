"""A JSON schema read from the prompt, for requests without an enforced schema (JSON mode, or none).

A model without schema enforcement only knows the reply format from the prompt. contentline's prompts
describe it as field lines (`- "intent": one of "a", "b"`, `- "title": string, at most 120 characters`,
`- "ideas": list of 1 to 20 objects, each with:`) and one `Shape: {...}` line; the fake reads both the way
a model would, so the same generator answers with or without `response_format`.
"""

from __future__ import annotations

import json
import re
from typing import Any

Schema = dict[str, Any]

_SHAPE = re.compile(r"^Shape:\s*(\{.*\})\s*$", re.M)
_FIELD = re.compile(r'^\s*-\s*"(?P<name>[^"]+)":\s*(?P<rest>.*)$', re.M)
_ENUM = re.compile(r'^one of ((?:"[^"]*"(?:,\s*)?)+)')
_MAX_CHARS = re.compile(r"^string, (?:(\d+)-)?(\d+) characters|^string, at most (\d+) characters")
_LIST = re.compile(r"^list of (?:(\d+) to (\d+)|at most (\d+)) ")


def _field_hints(text: str) -> dict[str, Schema]:
    hints: dict[str, Schema] = {}
    for m in _FIELD.finditer(text):
        rest, hint = m.group("rest"), {}
        if enum := _ENUM.match(rest):
            hint["enum"] = json.loads(f"[{enum.group(1).rstrip(', ')}]")
        elif size := _MAX_CHARS.match(rest):
            hint["maxLength"] = int(size.group(2) or size.group(3))
            if size.group(1):
                hint["minLength"] = int(size.group(1))
        elif items := _LIST.match(rest):
            hint["maxItems"] = int(items.group(2) or items.group(3))
            if items.group(1):
                hint["minItems"] = int(items.group(1))
        hints.setdefault(m.group("name"), hint)
    return hints


def _schema(value: Any, name: str, hints: dict[str, Schema]) -> Schema:
    hint = hints.get(name, {})
    if isinstance(value, dict):
        props = {k: _schema(v, k, hints) for k, v in value.items()}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    if isinstance(value, list):
        items = _schema(value[0], name, {}) if value else {"type": "string"}
        if isinstance(value[0] if value else None, dict):
            items = _schema(value[0], "", hints)
        return {"type": "array", "items": items, **{k: v for k, v in hint.items() if k.endswith("Items")}}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    return {"type": "string", **{k: v for k, v in hint.items() if not k.endswith("Items")}}


def from_prompt(text: str) -> Schema | None:
    """The schema the prompt's last `Shape:` line and field lines describe, or None without one."""
    shapes = _SHAPE.findall(text)
    if not shapes:
        return None
    try:
        example = json.loads(shapes[-1])
    except ValueError:
        return None
    return _schema(example, "", _field_hints(text))
