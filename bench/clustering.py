"""Stage-1 clustering benchmark: quality against human labels, model calls, time and memory at scale.

Run: `python -m bench.clustering` (about 1.5 minutes on 2 cores). See bench/README.md for what it prints.

Quality: the adjusted Rand index against human labels on public data sets (bench/datasets.py): the IAB
Content Taxonomy 3.0, shipped by a package that `make bench` installs, and, when their CSV files are in
`--data DIR` (or CONTENTLINE_BENCH_DATA, default `../shared/bench-data` beside the checkout), the BANKING77
and CLINC150 test splits. Two embedders (bench/embedders.py): the project's lexical fake embedder (what the
tests use) and all-MiniLM-L6-v2 as int8 ONNX, both from installed packages.

Only `assign()` is timed; embedding time is printed separately. The scale runs happen in a child process so
its peak RSS is the clustering process's own (interpreter + input matrix + clustering), not the bench's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.datasets import SEED, Dataset, labelled_datasets, synthetic_keywords
from bench.embedders import Embedder, fake_embedder, minilm_embedder
from fakeai.embeddings import embed as lexical_embed
from services.clusterer.clustering import Assignment, Vectors, assign, merged_centroid
from shared.settings import Settings

DATA = Path(os.environ.get("CONTENTLINE_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "bench-data"))
BASELINE_BATCH = 20  # the "one model call per 20 keywords" approach: a model clusters and names 20 at a time
TIME_TARGET_S = 60.0
MEMORY_TARGET_B = 2 * 1024**3


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


def quality(
    datasets: Sequence[Dataset], embedders: dict[str, tuple[Embedder, Sequence[float]]], embed_batch: int
) -> list[dict[str, Any]]:
    from sklearn.metrics import adjusted_rand_score  # type: ignore[import-untyped, unused-ignore]

    rows: list[dict[str, Any]] = []
    for ds in datasets:
        # Real keyword lists do not arrive sorted by topic: shuffle once (fixed seed) for every strategy.
        perm = np.random.default_rng(SEED).permutation(len(ds.texts))
        texts = [ds.texts[i] for i in perm]
        truth = np.unique([ds.labels[i] for i in perm], return_inverse=True)[1]
        n, k_true = len(texts), int(truth.max()) + 1
        print(f"\n== {ds.name}: {n} {ds.what}; {k_true} human labels", flush=True)
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
        f"   {'data set':<24} {'embedder':<22} {'thr':>4} | {'ARI ours':>8} {'baseline':>8} {'oracle/20':>9} |"
        f" {'calls/1000 ours':>15} {'baseline':>8} {'ours/baseline':>13}"
    )
    for key in dict.fromkeys((r["dataset"], r["embedder"]) for r in rows):
        best = max((r for r in rows if (r["dataset"], r["embedder"]) == key), key=lambda r: r["ari_ours"])
        print(
            f"   {key[0]:<24} {key[1]:<22} {best['threshold']:>4.2f} | {best['ari_ours']:>8.3f}"
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
    ap.add_argument("--data", help="directory holding the optional banking77_test.csv and clinc150_test.csv")
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
    if not args.skip_quality:
        datasets, missing = labelled_datasets(DATA)
        for reason in missing:
            print(f"note: data set skipped: {reason}")
        lexical = fake_embedder(dims)
        embedders: dict[str, tuple[Embedder, Sequence[float]]] = {
            f"lexical fake ({dims}d)": (lexical, (0.2, 0.3, 0.4, 0.5, 0.6)),
        }
        semantic, why_not = (None, "--no-minilm") if args.no_minilm else minilm_embedder()
        if semantic is not None:
            embedders["all-MiniLM-L6-v2 int8"] = (semantic, (0.3, 0.4, 0.5, 0.6, 0.7, 0.8))
        else:
            print(f"note: semantic embedder skipped: {why_not}")
        if not datasets:
            print("QUALITY SKIPPED: no labelled data set could be loaded (see the notes above). Scale figures follow.")
        else:
            print(
                "\nARI = adjusted Rand index vs the human labels (1 = identical partition, 0 = chance).\n"
                "ours = one assign() over the whole list (refinement on); no-refine = the same without the"
                " refinement pass;\ncmds/20 = the service fed commands of 20 keywords that share centroids"
                " through the DB; baseline = clusters\ncannot cross 20-keyword batches (each batch clustered"
                " alone, same algorithm); oracle/20 = perfect\nclustering inside each batch of 20, the ceiling"
                f" of any one-call-per-20 method. calls/1000: ours = ceil(n/{embed_batch})\nembedding requests"
                " + one naming call per cluster; cmds/20 = the same (the clusterer prefetches embeddings across"
                " commands);\nbaseline = 1000/20."
            )
            figures["quality"] = quality(datasets, embedders, embed_batch)
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
