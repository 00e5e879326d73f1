"""Stage-1 clustering benchmark: quality against human labels, model calls, time and memory at scale.

Run: `python -m bench.clustering` (about 6 minutes on 2 idle cores). See bench/README.md for what it prints.

Quality: the adjusted Rand index against human labels on public data sets (bench/datasets.py): the IAB
Content Taxonomy 3.0, shipped by a package that `make bench` installs, and, when their CSV files are in
`--data DIR` (or CONTENTLINE_BENCH_DATA, default `../shared/bench-data` beside the checkout), the BANKING77
and CLINC150 test splits. Two embedders (bench/embedders.py): the project's lexical fake embedder (what the
tests use) and all-MiniLM-L6-v2 as int8 ONNX, both from installed packages. Every embedding is also run as a
"narrow band" variant (bench/strategies.py: narrow_band), like models whose cosines all sit near 0.9.
Ours runs at DEFAULT settings (the threshold calibrated from the data, services/clusterer/calibration.py) and
is compared with the best fixed threshold of a sweep (quality section: bench/quality.py).

Only `assign()` is timed; embedding time is printed separately. The scale runs happen in a child process so
its peak RSS is the clustering process's own (interpreter + input matrix + clustering), not the bench's.
"""

from __future__ import annotations

import argparse
import json
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

from bench.datasets import SEED, labelled_datasets, synthetic_keywords
from bench.embedders import Embedder, fake_embedder, minilm_embedder
from bench.quality import quality
from bench.strategies import BASELINE_BATCH, calls_per_1000
from fakeai.embeddings import embed as lexical_embed
from services.clusterer.calibration import calibrate_vectors
from services.clusterer.clustering import assign, normalise
from shared.settings import Settings

DATA = Path(os.environ.get("CONTENTLINE_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "bench-data"))
TIME_TARGET_S = 60.0
MEMORY_TARGET_B = 2 * 1024**3


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


def measure_child(path: str, threshold: float | None, chunk: int, trace: bool) -> None:
    """In a fresh process: load the vectors, time assign(), report peak RSS; then tracemalloc its allocations.

    threshold None = default settings: calibrate (timed separately), then assign() in the centred view.
    """
    vectors = np.load(path)
    empty = np.zeros((0, vectors.shape[1]), np.float32)
    order = list(range(len(vectors)))
    rss_before = vm_kib("VmRSS")
    calibrate_s = 0.0
    if threshold is None:
        t0 = time.perf_counter()
        calibration = calibrate_vectors(vectors)
        calibrate_s = time.perf_counter() - t0
        vectors = normalise(vectors - vectors.mean(axis=0))
        threshold = calibration.threshold
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
        "calibrate_seconds": calibrate_s,
        "threshold": threshold,
        "clusters": len(plan.new_groups),
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak_rss,
        "traced_peak_bytes": traced_peak,
    }
    print(json.dumps(result))


@dataclass
class ScaleRun:
    n: int
    threshold: float | None  # None: default settings (calibrated)
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
            setting = "default settings (calibrated)" if threshold is None else f"fixed threshold {threshold}"
            print(f"-- {n:,} {what}, {setting}; embedding took {embed_s:.1f} s (not counted)", flush=True)
            command = [sys.executable, "-m", "bench.clustering", "--measure", path]
            command += ["--calibrated"] if threshold is None else ["--threshold", str(threshold)]
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
            if threshold is None:
                print(
                    f"   calibration: {r['calibrate_seconds']:.1f} s (sample of the vectors, neighbour radii over all"
                    f" {n:,}) -> threshold {r['threshold']:.3f} in the centred view"
                )
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
    ap.add_argument(
        "--threshold", type=float, default=0.5, help="fixed threshold of the scale runs that compare with the past"
    )
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
    ap.add_argument("--steps", type=int, default=40, help="thresholds in each sweep of the quality section")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--data", help="directory holding the optional banking77_test.csv and clinc150_test.csv")
    ap.add_argument("--json", help="also write all figures to this file")
    ap.add_argument("--calibrated", action="store_true", help=argparse.SUPPRESS)  # internal, with --measure
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the scale run's child process
    args = ap.parse_args(argv)
    global DATA  # noqa: PLW0603 - the data directory is a run-wide setting of this script
    if args.data:
        DATA = Path(args.data)
    if args.measure:
        measure_child(args.measure, None if args.calibrated else args.threshold, args.chunk, not args.no_trace)
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
        embedders: dict[str, Embedder] = {f"lexical fake ({dims}d)": fake_embedder(dims)}
        semantic, why_not = (None, "--no-minilm") if args.no_minilm else minilm_embedder()
        if semantic is not None:
            embedders["all-MiniLM-L6-v2 int8"] = semantic
        else:
            print(f"note: semantic embedder skipped: {why_not}")
        if not datasets:
            print("QUALITY SKIPPED: no labelled data set could be loaded (see the notes above). Scale figures follow.")
        else:
            print(
                "\nARI = adjusted Rand index vs the human labels (1 = identical partition, 0 = chance); NMI, V ="
                " normalised mutual\ninformation and V-measure of the same partition. variant: as-is = the"
                " embedder's vectors; narrow = the same\npushed towards one direction until 95 % of pair cosines"
                " exceed 0.8 (cos q5/q50/q95 = pair-cosine quantiles).\nthr, q = the calibrated threshold (a"
                " cosine in the centred view) and its quantile among the sample's pair cosines.\nARI = ours at"
                " DEFAULT settings, one assign() over the list; cmds/20 = the same fed to the service in"
                " commands of 20\n(embeddings fetched 512 at a time, recalibrated as the space doubles);"
                f" best thr / ARI = the best of {args.steps} fixed\nraw-cosine thresholds (the site override)"
                " between the pair-cosine median and 99.9 % quantile; ratio = ARI / best;\nctr best = the best"
                " of the same sweep in the centred view; base = clusters confined to batches of 20 at the\nbest"
                " fixed threshold (one call per 20 keywords); orc/20 = a perfect clustering inside each batch of"
                f" 20.\ncalls/1k = ceil(n/{embed_batch}) embedding requests + one naming call per cluster, per"
                " 1000 keywords (baseline: 50)."
            )
            figures["quality"] = quality(datasets, embedders, embed_batch, args.steps)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    runs = [ScaleRun(n, args.threshold) for n in sizes] + [ScaleRun(n, None) for n in sizes]
    if args.stress_threshold and sizes:
        runs.append(ScaleRun(max(sizes), args.stress_threshold, trace=False))
    if args.worst_case and sizes:
        runs.append(ScaleRun(max(sizes), args.threshold, trace=False, random=True))
    figures["scale"] = scale(runs, dims, args.chunk, embed_batch)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
