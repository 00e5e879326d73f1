"""Structured output without trusting the provider to enforce anything.

- `response_format()`: the request's format for the provider's mode: `json_schema` (strict, bounded),
  `json_object` (JSON mode) or `none`.
- `describe()`: the same schema as plain prompt text (field names, types, limits, a one-line shape), so a
  server with JSON mode only, or none, still knows what to write.
- `parse()`: JSON out of a reply (code fences, a `<think>` block or chatter around it tolerated), validated
  into the pydantic model; strings and lists over their limit are clipped rather than refused, since a
  model that ignores `maxLength` still wrote something usable.
- `repair_prompt()`: the re-ask after an invalid reply, quoting the error and naming the fields.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.ai.errors import FailureKind, clip

T = TypeVar("T", bound=BaseModel)
Schema = dict[str, Any]

LENGTH_KEYWORDS = frozenset({"maxLength", "minLength"})
# Grammar-based decoders (llama.cpp, vLLM's guided decoding) compile maxLength into a repetition rule; bounds
# of thousands of characters make those grammars huge and slow. Such prose fields are bounded by the reply's
# max_tokens instead: the schema sent keeps the short bounds (titles, names, meta), the prompt and our own
# validation keep all of them.
SENT_MAX_LENGTH = 2000
ITEM_KEYWORDS = frozenset({"maxItems", "minItems"})
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


class ReplyProblem(Exception):
    """What is wrong with a reply; `reply`: the parsed reply when it parsed (a caller may still use it)."""

    def __init__(self, kind: FailureKind, detail: str, reply: Any = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.reply = reply


@cache
def json_schema(model: type[BaseModel]) -> Schema:
    return model.model_json_schema()


def _resolve(node: Schema, root: Schema) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**root["$defs"][ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def strict(model: type[BaseModel], drop: frozenset[str] = frozenset()) -> Schema:
    """The model's JSON schema in the form strict mode accepts, without the keywords in `drop`."""
    schema = copy.deepcopy(json_schema(model))

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for key in ("title", "default", *drop):
            node.pop(key, None)
        if node.get("maxLength", 0) > SENT_MAX_LENGTH:
            node.pop("maxLength")  # prose: bounded by max_tokens instead (see SENT_MAX_LENGTH)
        if node.get("type") == "object" or "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node.get("properties", {}))
            for sub in node.get("properties", {}).values():
                walk(sub)
        for key in ("items", "anyOf", "oneOf", "allOf", "prefixItems"):
            if key in node:
                walk(node[key])
        for sub in node.get("$defs", {}).values():
            walk(sub)

    walk(schema)
    return schema


def response_format(model: type[BaseModel], mode: str, drop: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": model.__name__, "schema": strict(model, drop), "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


# ---------------------------------------------------------------- the schema as prompt text
def _type_text(node: Schema, root: Schema) -> str:
    node = _resolve(node, root)
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return f"exactly {json.dumps(node['const'])}"
    for key in ("anyOf", "oneOf"):
        if key in node:
            parts = [_type_text(v, root) for v in node[key] if v.get("type") != "null"]
            nullable = any(v.get("type") == "null" for v in node[key])
            return " or ".join(parts) + (" (or null)" if nullable else "")
    kind = node.get("type", "string")
    if kind == "string":
        lo, hi = node.get("minLength"), node.get("maxLength")
        if lo and hi:
            return f"string, {lo}-{hi} characters"
        return f"string, at most {hi} characters" if hi else "string"
    if kind in ("integer", "number"):
        lo, hi = node.get("minimum"), node.get("maximum")
        word = "integer" if kind == "integer" else "number"
        if lo is not None and hi is not None:
            return f"{word} from {lo} to {hi}"
        return word
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        items = _resolve(node.get("items", {}), root)
        what = "objects" if items.get("type") == "object" or "properties" in items else _type_text(items, root)
        lo, hi = node.get("minItems"), node.get("maxItems")
        count = f"{lo} to {hi} " if lo and hi else f"at most {hi} " if hi else ""
        return f"list of {count}{what}" if what == "objects" else f"list of {count}items, each {what}"
    if kind == "object":
        return "object"
    return str(kind)


def _lines(node: Schema, root: Schema, indent: str) -> list[str]:
    node = _resolve(node, root)
    lines: list[str] = []
    for name, sub in node.get("properties", {}).items():
        resolved = _resolve(sub, root)
        text = f'{indent}- "{name}": {_type_text(sub, root)}'
        if desc := resolved.get("description"):
            text += f". {' '.join(str(desc).split())}"
        if resolved.get("type") == "array":
            items = _resolve(resolved.get("items", {}), root)
            if "properties" in items:
                lines += [text + ", each with:", *_lines(items, root, indent + "  ")]
                continue
        if "properties" in resolved:
            lines += [text + " with:", *_lines(resolved, root, indent + "  ")]
            continue
        lines.append(text)
    return lines


def _example(node: Schema, root: Schema) -> Any:
    node = _resolve(node, root)
    if "enum" in node:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _example(next(v for v in node[key] if v.get("type") != "null"), root)
    kind = node.get("type", "object" if "properties" in node else "string")
    if kind == "object":
        return {name: _example(sub, root) for name, sub in node.get("properties", {}).items()}
    if kind == "array":
        return [_example(node.get("items", {}), root)]
    if kind in ("integer", "number"):
        return node.get("minimum", 0)
    if kind == "boolean":
        return True
    return "..."


@cache
def describe(model: type[BaseModel]) -> str:
    """The reply format as prompt text: every field with its type and limits, then the shape on one line."""
    schema = json_schema(model)
    return "\n".join(
        [
            "Reply with one JSON object only: no text before or after it, no code fences. Its fields:",
            *_lines(schema, schema, ""),
            "Shape: " + json.dumps(_example(schema, schema), ensure_ascii=False),
        ]
    )


def field_names(model: type[BaseModel]) -> list[str]:
    schema = json_schema(model)
    return list(schema.get("properties", {}))


# ---------------------------------------------------------------- reading a reply
def extract_json(text: str) -> Any:
    """The JSON value in a reply; raises ReplyProblem(INVALID_JSON) naming where it broke."""
    body = _THINK.sub("", text).strip()
    fenced = _FENCE.search(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as first:
        start, end = body.find("{"), body.rfind("}")
        if 0 <= start < end:  # chatter around the object
            try:
                return json.loads(body[start : end + 1])
            except json.JSONDecodeError:
                pass
        snippet = clip(body[max(first.pos - 40, 0) : first.pos + 20], 80)
        raise ReplyProblem(
            FailureKind.INVALID_JSON, f"{first.msg} at line {first.lineno} column {first.colno} (near {snippet!r})"
        ) from first


def _clip_at(data: Any, loc: tuple[int | str, ...], limit: int) -> bool:
    node = data
    for key in loc[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    last = loc[-1]
    try:
        value = node[last]
    except (KeyError, IndexError, TypeError):
        return False
    if isinstance(value, str):
        cut = value[:limit]
        node[last] = cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut
        return True
    if isinstance(value, list):
        node[last] = value[:limit]
        return True
    return False


def errors_text(exc: ValidationError, limit: int = 4) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "the object"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _limit(error: Any) -> int:
    return int((error.get("ctx") or {}).get("max_length", 0))


def validate(model: type[T], data: Any) -> T:
    """Validate, clipping over-long strings and lists first; raises ReplyProblem(SCHEMA_VIOLATION)."""
    if not isinstance(data, dict):
        raise ReplyProblem(FailureKind.SCHEMA_VIOLATION, f"expected a JSON object, got {type(data).__name__}")
    for round_ in range(4):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            fixable = [e for e in errors if e["type"] in ("string_too_long", "too_long")]
            if (
                round_ == 3
                or len(fixable) < len(errors)
                or not all(_clip_at(data, tuple(e["loc"]), _limit(e)) for e in fixable)
            ):
                raise ReplyProblem(FailureKind.SCHEMA_VIOLATION, errors_text(exc)) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def strings(value: Any) -> list[str]:
    """Every string value in a parsed reply, depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for v in value.values() for text in strings(v)]
    if isinstance(value, list):
        return [text for v in value for text in strings(v)]
    return []


def repair_prompt(problem: ReplyProblem, model: type[BaseModel], language: str | None) -> str:
    """The follow-up message after an unusable reply: what was wrong, and what to send instead."""
    fields = ", ".join(f'"{n}"' for n in field_names(model))
    if problem.kind is FailureKind.WRONG_LANGUAGE and language:
        first = f"Your previous reply was not written in {language} ({problem.detail})."
        ask = f"Write every text value in {language}."
    elif problem.kind is FailureKind.REPETITION:
        first = f"Your previous reply repeated itself over and over ({clip(problem.detail, 200)})."
        ask = "Say each thing once, in full sentences, and stop when the point is made."
    elif problem.kind is FailureKind.EMPTY:
        first, ask = "Your previous reply was empty.", "Answer the request."
    elif problem.kind is FailureKind.OFF_TARGET:
        first, ask = f"Your previous reply missed the request: {clip(problem.detail, 400)}.", "Follow the request."
    else:
        first = f"Your previous reply could not be used: {problem.kind.label}: {clip(problem.detail, 400)}."
        ask = "Keep every value within its limit."
    return (
        f"{first} Reply again with one valid JSON object and nothing else, with exactly these fields: {fields} "
        f"(as described above). {ask}"
    )
