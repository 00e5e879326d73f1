"""JSON-schema-driven generator for ``response_format`` chat completions.

The output is valid against the schema (refs, unions, enums, bounds) and its
values are plausible text derived from the prompt; see ``text.PromptInfo``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fakeai import text
from fakeai.text import PromptInfo, stable_hash

Schema = dict[str, Any]

DEFAULT_ITEMS = 3
DEFAULT_PROSE_WORDS = 120
DEFAULT_ARTICLE_WORDS = 600  # a markdown field following an Outline, without Target words
DEFAULT_WORD_COUNT = 1200
# Past this depth recursive schemas get their minimal shape (null / minItems) so generation ends.
MAX_DEPTH = 12

_INTENTS = frozenset({"informational", "commercial", "transactional", "navigational"})
_SUBSET_QUALIFIERS = frozenset({"secondary", "related", "supporting", "additional", "other", "extra", "lsi"})
_TITLE = frozenset({"name", "title", "heading", "headline", "h1"})
_SUMMARY = frozenset({"description", "brief", "summary", "caption", "alt", "excerpt", "rationale", "explanation"})
_PROSE = frozenset({"markdown", "body", "content", "text", "section", "paragraph"})
_KEYWORDISH = frozenset({"keyword", "query", "term", "topic", "phrase"})
_SHORT = frozenset({"anchor", "label", "cta", "button", "tag", "category", "type", "kind", "id", "status"})


class ResponseFormatError(ValueError):
    """The request's response_format is unusable; reported as HTTP 400."""


@dataclass(frozen=True, slots=True)
class _Ctx:
    info: PromptInfo
    root: Schema
    path: tuple[str | int, ...] = ()
    name: str = ""
    index: int | None = None
    focus: int = 0
    depth: int = 0
    siblings: int = 0  # length of the nearest enclosing array
    refs: frozenset[str] = frozenset()  # $refs being expanded on this path, to spot recursion

    @property
    def seed(self) -> int:
        return stable_hash(self.info.seed, *self.path)

    @property
    def tokens(self) -> tuple[str, ...]:
        return _tokens(self.name)

    def stop_at(self, schema: Any) -> bool:
        """True where a recursive (or absurdly deep) schema should take its minimal shape."""
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        return self.depth > MAX_DEPTH or (isinstance(ref, str) and ref in self.refs)

    def child(self, key: str | int, *, name: str | None = None, index: int | None = None, of: int = 0) -> _Ctx:
        return replace(
            self,
            path=(*self.path, key),
            name=self.name if name is None else name,
            index=self.index if index is None else index,
            focus=self.focus if index is None else self.focus + index,
            siblings=self.siblings if index is None else of,
            depth=self.depth + 1,
        )


def _tokens(name: str) -> tuple[str, ...]:
    """``metaTitle`` / ``meta_title`` -> ("meta", "title"); plurals singularised."""
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)
    return tuple(
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in map(str.lower, words)
    )


def _pointer(root: Schema, ref: str) -> Schema:
    if not ref.startswith("#"):
        raise ResponseFormatError(f"unsupported $ref {ref!r}")
    node: Any = root
    for raw in filter(None, ref[1:].split("/")):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ResponseFormatError(f"unresolvable $ref {ref!r}")
        node = node[part]
    if not isinstance(node, dict):
        raise ResponseFormatError(f"$ref {ref!r} is not a schema")
    return node


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Inline ``$ref`` (siblings win, as in the SDK's strict conversion) and merge ``allOf``."""
    for _ in range(64):
        if "$ref" not in schema:
            break
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**_pointer(root, schema["$ref"]), **rest}
    if "allOf" in schema:
        merged: Schema = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            for key, value in _resolve(part, root).items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                else:
                    merged.setdefault(key, value)
        schema = merged
    return schema


def _is_null(schema: Schema) -> bool:
    return schema.get("type") == "null"


def _gen(schema: Schema, ctx: _Ctx) -> Any:
    if ctx.depth > 4 * MAX_DEPTH:
        raise ResponseFormatError("schema recursion has no finite instance (make the recursive field optional)")
    if isinstance(ref := schema.get("$ref"), str):
        ctx = replace(ctx, refs=ctx.refs | {ref})
    schema = _resolve(schema, ctx.root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _enum(list(schema["enum"]), ctx)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            variants = schema[key]
            concrete = [v for v in variants if not _is_null(_resolve(v, ctx.root))]
            if not concrete or (len(concrete) < len(variants) and ctx.stop_at(concrete[0])):
                return None
            rest = {k: v for k, v in schema.items() if k != key}
            # Keep the variant's $ref unresolved so recursion tracking still sees it.
            return _gen({**rest, **concrete[0]}, ctx)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, ctx)
    if kind == "array":
        return _array(schema, ctx)
    if kind == "string":
        return _string(schema, ctx)
    if kind == "integer":
        return _integer(schema, ctx)
    if kind == "number":
        return _number(schema, ctx)
    if kind == "boolean":
        return ctx.seed % 2 == 0
    return None


def _enum(values: list[Any], ctx: _Ctx) -> Any:
    lowered = {str(v).lower(): v for v in values}
    if lowered.keys() >= _INTENTS:
        # Explicit keywords beat the whole prompt: instructions often contain "best"/"compare".
        cue = ctx.info.keyword(ctx.focus) if ctx.info.explicit_keywords else ctx.info.text
        return lowered[text.search_intent(cue)]
    return values[stable_hash(ctx.info.seed, *ctx.path, "enum") % len(values)] if values else None


def _object(schema: Schema, ctx: _Ctx) -> dict[str, Any]:
    props: Mapping[str, Schema] = schema.get("properties") or {}
    out = {key: _gen(sub, ctx.child(key, name=key)) for key, sub in props.items()}
    for key in schema.get("required", []):
        out.setdefault(key, text.phrase(ctx.info.keywords, ctx.seed, ctx.focus))
    extra = schema.get("additionalProperties")
    if not props and isinstance(extra, dict) and ctx.depth <= MAX_DEPTH:
        for i in range(min(2, len(ctx.info.keywords))):
            key = text.kebab(ctx.info.keyword(ctx.focus + i))
            out[key] = _gen(extra, ctx.child(key, name=key, index=i))
    return out


def _clamp(n: int, schema: Schema) -> int:
    n = max(n, int(schema.get("minItems", 0)))
    return min(n, int(schema["maxItems"])) if "maxItems" in schema else n


def _array(schema: Schema, ctx: _Ctx) -> list[Any]:
    items = schema.get("items")
    item_schema = _resolve(items, ctx.root) if isinstance(items, dict) else {}
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return [_gen(sub, ctx.child(i, index=i, of=len(prefix))) for i, sub in enumerate(prefix)]
    tokens = ctx.tokens
    if tokens and tokens[-1] == "keyword" and item_schema.get("type") == "string" and "enum" not in item_schema:
        return _keyword_array(schema, item_schema, ctx)
    if ctx.stop_at(items):
        count = int(schema.get("minItems", 0))
    elif len(ctx.path) <= 1 and ctx.info.n_items is not None:
        count = _clamp(ctx.info.n_items, schema)
    else:
        count = _clamp(DEFAULT_ITEMS, schema)
    values = [_gen(items if isinstance(items, dict) else {}, ctx.child(i, index=i, of=count)) for i in range(count)]
    if schema.get("uniqueItems"):
        unique = {json.dumps(v, sort_keys=True): v for v in values}
        values = list(unique.values())
    return values


def _keyword_array(schema: Schema, item_schema: Schema, ctx: _Ctx) -> list[str]:
    """Keywords come from the prompt's list only (a subset, never invented).

    Inside an array of N items (clusters, sections) item i takes every N-th keyword,
    so the items partition the list the way a real clustering answer would.
    """
    info = ctx.info
    pool = info.keywords
    if _SUBSET_QUALIFIERS & set(ctx.tokens) and len(pool) > 1:
        pool = pool[1:]
    if ctx.index is not None and ctx.siblings > 1:
        share = pool[ctx.index % ctx.siblings :: ctx.siblings]
        pool = share or (pool[ctx.index % len(pool)],)
        start = 0
    else:
        start = ctx.focus
    wanted = info.n_items if len(ctx.path) <= 1 and info.n_items is not None else len(pool)
    count = _clamp(min(wanted, len(pool)), schema)
    values = []
    for i in range(count):
        kw = pool[(start + i) % len(pool)]
        if i >= len(pool):  # minItems forced us past the list; keep items distinct
            kw = f"{kw} {i // len(pool) + 1}"
        values.append(_fit(kw, item_schema, kw))
    return values


def _fit(value: str, schema: Schema, pad: str) -> str:
    return text.fit(value, schema.get("minLength"), schema.get("maxLength"), pad)


def _formatted(fmt: str, ctx: _Ctx) -> str | None:
    slug = text.kebab(ctx.info.keyword(ctx.focus))
    return {
        "date-time": "2024-01-15T09:30:00Z",
        "date": "2024-01-15",
        "time": "09:30:00Z",
        "email": f"editor@{slug[:40]}.example.com",
        "uri": f"https://example.com/{slug}",
        "url": f"https://example.com/{slug}",
        "uuid": str(uuid.UUID(int=ctx.seed << 64 | ctx.seed)),
        "hostname": f"{slug[:40]}.example.com",
        "ipv4": "192.0.2.1",
    }.get(fmt)


def _string(schema: Schema, ctx: _Ctx) -> str:
    formatted = _formatted(str(schema.get("format", "")), ctx)
    if formatted is not None:
        return formatted
    pad = ctx.info.keyword(ctx.focus)
    return text.fit_any(_string_candidates(ctx), schema.get("minLength"), schema.get("maxLength"), pad)


def _string_candidates(ctx: _Ctx) -> list[str]:
    """Values by field-name heuristics, best first; the first within min/maxLength wins."""
    info, seed, focus = ctx.info, ctx.seed, ctx.focus
    keyword = info.keyword(focus)
    tokens = ctx.tokens
    names = set(tokens)
    if "slug" in names:
        return [text.kebab(keyword)]
    if tokens == ("primary", "keyword"):
        return [info.keywords[0]]
    if "prompt" in names:
        return [text.image_prompt(info.keywords, seed, focus)]
    if "placement" in names:
        return ["featured" if not ctx.index else f"after-section-{ctx.index}"]
    if names & _TITLE:
        if "heading" in names and ctx.index is not None and ctx.index < len(info.outline):
            return [info.outline[ctx.index].lstrip("#").strip()]
        # Section headings of one outline differ by position too: a cluster of two keywords would
        # otherwise give a five-heading outline two distinct headings (a degenerate answer, re-asked).
        # (one seed for the whole outline plus the position: consecutive templates, none repeated)
        if "heading" in names and ctx.index is not None and len(ctx.path) >= 2 and ctx.path[-2] == ctx.index:
            seed = stable_hash(info.seed, *ctx.path[:-2]) + ctx.index
        headlines = text.titles(info.keywords, seed, focus)
        return [headlines[-1], *headlines] if "name" in names else headlines
    if names & _SUMMARY or any(t.startswith("reason") for t in tokens):
        return text.summaries(info.keywords, seed, focus)
    if "intent" in names:
        return [text.search_intent(keyword if info.explicit_keywords else info.text)]
    if names & _KEYWORDISH:
        return [keyword]
    if names & {"url", "link", "href"}:
        return [f"https://example.com/{text.kebab(keyword)}"]
    if names & {"language", "lang", "locale"}:
        return ["en"]
    if names & _PROSE and not names & _SHORT:
        if "markdown" in names and info.outline:
            words = info.target_words or DEFAULT_ARTICLE_WORDS
            return [text.outline_markdown(info.outline, words, info.keywords, seed)]
        return [text.prose(info.target_words or DEFAULT_PROSE_WORDS, info.keywords, seed, focus)]
    return [text.phrase(info.keywords, seed, focus)]


def _int_bounds(schema: Schema) -> tuple[int | None, int | None]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is None and schema.get("exclusiveMinimum") is not None:
        lo = math.floor(schema["exclusiveMinimum"]) + 1
    if hi is None and schema.get("exclusiveMaximum") is not None:
        hi = math.ceil(schema["exclusiveMaximum"]) - 1
    return (math.ceil(lo) if lo is not None else None, math.floor(hi) if hi is not None else None)


def _integer(schema: Schema, ctx: _Ctx) -> int:
    names = set(ctx.tokens)
    lo, hi = _int_bounds(schema)
    if names & {"word", "words"}:
        value = ctx.info.target_words or DEFAULT_WORD_COUNT
    elif "level" in names:
        heading = (
            ctx.info.outline[ctx.index]
            if ctx.info.outline and ctx.index is not None and ctx.index < len(ctx.info.outline)
            else ""
        )
        value = 3 if heading.startswith("###") else 2
    elif names & {"position", "order", "index", "rank", "step", "number"}:
        value = (ctx.index or 0) + 1
    else:
        start = lo if lo is not None else (hi - 9 if hi is not None else 1)
        stop = hi if hi is not None else start + 9
        value = start + ctx.seed % (max(stop - start, 0) + 1)
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0 and value % step:
        value += step - value % step
        if hi is not None and value > hi:
            value -= step
    return value


def _number(schema: Schema, ctx: _Ctx) -> float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if set(ctx.tokens) & {"word", "words"} and ctx.info.target_words:
        value = float(ctx.info.target_words)
        return min(max(value, lo if lo is not None else value), hi if hi is not None else value)
    low = float(lo) if lo is not None else (float(hi) - 1.0 if hi is not None else 0.0)
    high = float(hi) if hi is not None else low + 1.0
    # Stay strictly inside the range so exclusive bounds hold too.
    frac = 0.1 + 0.8 * ((ctx.seed % 1000) / 1000)
    value = round(low + (high - low) * frac, 3)
    return value if low < value < high or low == high else low + (high - low) / 2


def strict_violation(schema: Schema) -> str | None:
    """First rule that OpenAI's strict mode would reject, if any."""

    def walk(node: Any, path: str) -> str | None:
        if isinstance(node, list):
            return next((v for i, n in enumerate(node) if (v := walk(n, f"{path}/{i}"))), None)
        if not isinstance(node, dict):
            return None
        if node.get("type") == "object" or "properties" in node:
            if node.get("additionalProperties") is not False:
                return f"{path or '/'}: additionalProperties must be false in strict mode"
            missing = set(node.get("properties", {})) - set(node.get("required", []))
            if missing:
                return f"{path or '/'}: every property must be required in strict mode (missing {sorted(missing)})"
        for key, value in node.items():
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                found = next((v for k, s in value.items() if (v := walk(s, f"{path}/{key}/{k}"))), None)
            elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems", "additionalProperties"):
                found = walk(value, f"{path}/{key}")
            else:
                found = None
            if found:
                return found
        return None

    return walk(schema, "")


def generate(schema: Schema, info: PromptInfo) -> Any:
    return _gen(schema, _Ctx(info=info, root=schema))


def malformed(doc: Any, schema: Schema, seed: int) -> str:
    """Invalid output: a required field dropped, or truncated JSON (choice by seed)."""
    root = _resolve(schema, schema)
    required = [k for k in root.get("required", []) if isinstance(doc, dict) and k in doc]
    if required and seed % 2 == 0:
        return json.dumps({k: v for k, v in doc.items() if k != required[0]}, ensure_ascii=False)
    dumped = json.dumps(doc, ensure_ascii=False)
    cut = dumped[: max(1, len(dumped) * 3 // 5)]
    try:
        json.loads(cut)
    except ValueError:
        return cut
    return cut + ","  # a prefix of a scalar can still parse; make sure it does not


def json_object(info: PromptInfo) -> dict[str, Any]:
    return {
        "topic": info.keywords[0],
        "title": text.titles(info.keywords, info.seed)[0],
        "summary": text.summaries(info.keywords, info.seed)[0],
        "keywords": list(info.keywords[:5]),
    }


def completion(
    info: PromptInfo,
    response_format: Mapping[str, Any] | None,
    *,
    bad: bool,
    strict_check: bool,
    shape: Schema | None = None,
) -> str:
    """Assistant message content for a chat request; ``bad`` asks for malformed output.

    ``shape``: the schema the prompt describes (fakeai.shape), answered in JSON mode and without any
    response_format, as a model that reads its prompt would.
    """
    kind = (response_format or {}).get("type", "text")
    if kind == "json_schema" and response_format is not None:
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict) or not spec.get("name"):
            raise ResponseFormatError("response_format.json_schema needs a 'name' and a 'schema' object")
        schema: Schema = spec["schema"]
        if strict_check and spec.get("strict") and (problem := strict_violation(schema)):
            raise ResponseFormatError(f"Invalid schema for response_format '{spec['name']}': {problem}")
        doc = generate(schema, info)
        return malformed(doc, schema, info.seed) if bad else json.dumps(doc, ensure_ascii=False)
    if kind not in ("json_object", "text"):
        raise ResponseFormatError(f"unsupported response_format type {kind!r}")
    if shape is not None:
        doc = generate(shape, info)
        return malformed(doc, shape, info.seed) if bad else json.dumps(doc, ensure_ascii=False)
    if kind == "json_object":
        doc = json_object(info)
        return malformed(doc, {}, 1) if bad else json.dumps(doc, ensure_ascii=False)
    if bad:
        return ""  # prose has no schema to break; empty content is the detectable failure
    if info.outline:
        return text.outline_markdown(info.outline, info.target_words or DEFAULT_ARTICLE_WORDS, info.keywords, info.seed)
    return text.prose(info.target_words or 150, info.keywords, info.seed)


def keyword_in_schema(schema: Any, keywords: set[str]) -> tuple[str, str] | None:
    """(keyword, path) of the first of `keywords` used in the schema, as a strict mode would refuse it."""
    if isinstance(schema, list):
        return next((found for item in schema if (found := keyword_in_schema(item, keywords))), None)
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key in keywords and key not in ("properties", "$defs"):
            return key, key
        if key in ("properties", "$defs") and isinstance(value, dict):
            for name, sub in value.items():
                if found := keyword_in_schema(sub, keywords):
                    return found[0], f"{name}.{found[1]}"
        elif isinstance(value, dict | list) and (found := keyword_in_schema(value, keywords)):
            return found
    return None


def is_json_format(response_format: Mapping[str, Any] | None) -> bool:
    return (response_format or {}).get("type") in ("json_schema", "json_object")
