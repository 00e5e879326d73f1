"""Deterministic lexical embeddings via signed feature hashing.

Features are word unigrams plus character trigrams of each word padded with
boundary marks, so texts sharing words or word stems land close together while
unrelated texts are near-orthogonal. Hashes are blake2b (stable across runs).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import unicodedata
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

MAX_INPUTS = 2048
MAX_CHARS = 8192
DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 3072
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.4
_TOKEN_RE = re.compile(r"[^\W_]+")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | list[str]
    model: str
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    encoding_format: Literal["float", "base64"] = "float"


class EmbeddingInputError(ValueError):
    def __init__(self, message: str, param: str = "input") -> None:
        super().__init__(message)
        self.param = param


def _hash64(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=100_000)
def _token_features(token: str) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    """Hashes and signed weights for one word; cached because vocabularies repeat heavily."""
    padded = f"<{token}>"
    features = [f"w:{token}", *(f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))]
    hashes = np.array([_hash64(f) for f in features], dtype=np.uint64)
    weights = np.full(len(features), _TRIGRAM_WEIGHT)
    weights[0] = _WORD_WEIGHT
    # The top bit picks the sign so collisions cancel out on average instead of piling up.
    signs = np.where(hashes >> np.uint64(63), -1.0, 1.0)
    return hashes, weights * signs


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def embed(texts: list[str], dimensions: int = DEFAULT_DIMENSIONS) -> npt.NDArray[np.float32]:
    """L2-normalised float32 matrix, one row per text."""
    rows: list[int] = []
    hashes: list[npt.NDArray[np.uint64]] = []
    weights: list[npt.NDArray[np.float64]] = []
    for row, text in enumerate(texts):
        # Texts without any word (punctuation only) still get a stable non-zero vector.
        for token in _tokens(text) or [f"\x00{text}"]:
            h, w = _token_features(token)
            hashes.append(h)
            weights.append(w)
            rows.extend([row] * len(h))
    flat = np.asarray(rows, dtype=np.int64) * dimensions
    flat += (np.concatenate(hashes) % np.uint64(dimensions)).astype(np.int64)
    matrix = np.bincount(flat, weights=np.concatenate(weights), minlength=len(texts) * dimensions)
    matrix = matrix.reshape(len(texts), dimensions)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def validate_inputs(request: EmbeddingRequest) -> list[str]:
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts:
        raise EmbeddingInputError("'input' must not be an empty list")
    if len(texts) > MAX_INPUTS:
        raise EmbeddingInputError(f"'input' has {len(texts)} items; at most {MAX_INPUTS} are allowed")
    for i, text in enumerate(texts):
        if not text:
            raise EmbeddingInputError(f"'input[{i}]' must not be empty", f"input[{i}]")
        if len(text) > MAX_CHARS:
            raise EmbeddingInputError(f"'input[{i}]' has {len(text)} characters; limit is {MAX_CHARS}", f"input[{i}]")
    return texts


def response(request: EmbeddingRequest, texts: list[str], native: int | None = None) -> dict[str, Any]:
    """`native`: a model's own size, returned whatever `dimensions` asked (a provider that ignores it)."""
    vectors = embed(texts, native or request.dimensions or DEFAULT_DIMENSIONS)
    little_endian = vectors.astype("<f4", copy=False)
    data: list[dict[str, Any]] = [
        {
            "object": "embedding",
            "index": i,
            # The SDK asks for base64 by default and decodes little-endian float32.
            "embedding": base64.b64encode(row.tobytes()).decode()
            if request.encoding_format == "base64"
            else row.tolist(),
        }
        for i, row in enumerate(little_endian)
    ]
    tokens = sum(math.ceil(len(t) / 4) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
