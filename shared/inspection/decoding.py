"""Reading our messages back: topic → contract, one-line summaries, and dead-letter bodies.

Dead-letter bodies may be gzip-compressed (a header says so) and, when still too large, truncated with
the original's size and SHA-256 in headers. The header names below are the ones this module
understands; producers should use the first name of each tuple.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.contracts import ArticlePublished, KeywordBatchIngested, RunEvent, Stage, StageCommand, StageResult
from shared.inspection.models import BodyView
from shared.topics import (
    ARTICLES_PUBLISHED,
    COMMANDS_DLQ,
    KEYWORDS_INGEST,
    KEYWORDS_INGEST_DLQ,
    RESULTS_DLQ,
    RUN_EVENTS,
    STAGE_COMMAND_TOPICS,
    STAGE_RESULTS,
)
from shared.worker import FailedItems

DLQ_ENCODING_HEADERS = ("x-dead-letter-content-encoding", "content-encoding")
DLQ_ORIGINAL_SIZE_HEADERS = ("x-dead-letter-original-size", "x-original-size")
DLQ_ORIGINAL_SHA256_HEADERS = ("x-dead-letter-original-sha256", "x-original-sha256")

# What each topic carries (README, Topics). Dead-letter topics hold their source topic's messages;
# the stage-commands DLQ also holds FailedItems copies of results.
TOPIC_CONTRACTS: dict[str, tuple[type[BaseModel], ...]] = {
    KEYWORDS_INGEST: (KeywordBatchIngested,),
    KEYWORDS_INGEST_DLQ: (KeywordBatchIngested,),
    **dict.fromkeys(set(STAGE_COMMAND_TOPICS.values()), (StageCommand,)),
    COMMANDS_DLQ: (StageCommand, FailedItems),
    STAGE_RESULTS: (StageResult,),
    RESULTS_DLQ: (StageResult,),
    RUN_EVENTS: (RunEvent,),
    ARTICLES_PUBLISHED: (ArticlePublished,),
}


def first_header(headers: dict[str, str], names: tuple[str, ...]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    return next((lowered[n] for n in names if n in lowered), None)


def decode_contract(topic: str, value: bytes | None) -> BaseModel | None:
    """The value as the first contract of `topic` it validates against, else None."""
    if not value:
        return None
    for model in TOPIC_CONTRACTS.get(topic, ()):
        try:
            return model.model_validate_json(value)
        except ValidationError:
            continue
    return None


def _stage(stage: int) -> str:
    try:
        return f"{stage} ({Stage(stage).label})"
    except ValueError:
        return str(stage)


def summarise(message: BaseModel) -> str:
    """One readable line for a decoded contract (the message id last: it is long and rarely needed)."""
    if isinstance(message, KeywordBatchIngested):
        run = " start_run" if message.start_run else ""
        text = f"keywords site={message.site_id} n={len(message.keywords)} source={message.source}{run}"
    elif isinstance(message, StageCommand):
        text = (
            f"command stage={_stage(message.stage)} run={message.run_id} site={message.site_id} "
            f"batch={message.batch_seq} attempt={message.attempt} items={len(message.item_ids)}"
        )
    elif isinstance(message, StageResult):  # FailedItems too
        kind = "failed-items" if isinstance(message, FailedItems) else "result"
        failed = f" failed={len(message.failures)}" if message.failures else ""
        text = (
            f"{kind} stage={_stage(message.stage)} run={message.run_id} batch={message.batch_seq} "
            f"status={message.status} processed={message.items_processed}/{message.items_in} "
            f"created={message.items_created}{failed} {message.seconds:.1f}s worker={message.worker or '?'}"
        )
        if message.failures:
            text += f" first failure: {message.failures[0].reason[:120]}"
    elif isinstance(message, RunEvent):
        detail = f" — {message.detail}" if message.detail else ""
        text = (
            f"run {message.run_id} {message.event} status={message.status} stage={message.stage} "
            f"site={message.site_id}{detail}"
        )
    elif isinstance(message, ArticlePublished):
        text = (
            f"published draft={message.draft_id} site={message.site_id} {message.title!r} "
            f"words={message.word_count} images={len(message.images)}"
        )
    else:
        text = type(message).__name__
    message_id = getattr(message, "message_id", None)
    return f"{text} id={message_id}" if message_id else text


def raw_preview(value: bytes | None, limit: int = 200) -> str:
    """Text if it is UTF-8, else a bytes literal; cut to `limit` characters."""
    if value is None:
        return "<null>"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(value[: limit * 2])
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gunzip(stored: bytes) -> tuple[bytes, str | None]:
    """Decompress what is there; a cut stream yields its decodable start and the reason."""
    try:
        return gzip.decompress(stored), None
    except (OSError, EOFError, zlib.error) as exc:
        partial = zlib.decompressobj(wbits=31)  # 31: gzip framing
        try:
            data = partial.decompress(stored)
        except zlib.error:
            data = b""
        return data, f"gzip stream incomplete or corrupt ({type(exc).__name__}: {exc})"


def decode_body(stored: bytes | None, headers: dict[str, str], max_chars: int) -> tuple[bytes, BodyView]:
    """The original message bytes (or their start) and how they read."""
    stored = stored or b""
    encoding = first_header(headers, DLQ_ENCODING_HEADERS)
    data, error = stored, None
    if encoding is not None:
        encoding = encoding.strip().lower()
        if encoding in {"gzip", "x-gzip"}:
            data, error = _gunzip(stored)
        elif encoding not in {"identity", ""}:
            error = f"unknown content encoding {encoding!r}: shown as stored"
    size_header = first_header(headers, DLQ_ORIGINAL_SIZE_HEADERS)
    original_size = int(size_header) if size_header and size_header.strip().isdigit() else None
    original_sha = first_header(headers, DLQ_ORIGINAL_SHA256_HEADERS)
    sha_matches = None if not original_sha else hashlib.sha256(data).hexdigest() == original_sha.strip().lower()
    # Only part of the original is here: a size or checksum says so, or the gzip stream ends early.
    truncated = (
        (original_size is not None and len(data) < original_size)
        or sha_matches is False
        or (error is not None and encoding in {"gzip", "x-gzip"})
    )

    try:
        parsed: Any = json.loads(data)
        text, is_json = json.dumps(parsed, indent=2, ensure_ascii=False), True
    except ValueError:  # not JSON (or not UTF-8): text if it decodes, else a bytes literal
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = repr(data[: max_chars * 2])
        is_json = False
    cut = len(text) > max_chars
    view = BodyView(
        stored_bytes=len(stored),
        encoding=encoding,
        size=len(data),
        original_size=original_size,
        original_sha256=original_sha,
        truncated=truncated,
        sha256_matches=sha_matches,
        is_json=is_json,
        text=text[:max_chars] + ("…" if cut else ""),
        text_truncated=cut,
        decode_error=error,
    )
    return data, view


def message_id_of(data: bytes, headers: dict[str, str]) -> str | None:
    """The id idempotent consumers dedupe on: the body's `message_id`, else the outbox's header."""
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message_id"), str):
        return str(parsed["message_id"])
    return headers.get("message_id")
