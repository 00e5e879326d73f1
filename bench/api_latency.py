"""API latency while a 100,000-keyword import runs: GET p50/p95/max idle and during the import, side by side.

Run: `python -m bench.api_latency` (about a minute on 2 cores; starts Kafka, PostgreSQL and the
orchestrator the way the tests do, and stops them). `--keywords N` changes the import size, `--json`
times the JSON import instead of the planner CSV upload.

Before issue 9 the import parsed and inserted on the event loop (GETs went from 26 ms to p50 0.9 s, max
2 s); now parsing, validation and deduplication run in a worker thread and rows go in chunks.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import threading
import time
from pathlib import Path

import httpx

from devstack.stack import Stack


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def sample_gets(client: httpx.Client, paths: list[str], until: threading.Event | None, count: int) -> list[float]:
    """Latencies (ms) of GETs in turn: `count` of them, or until `until` is set."""
    out: list[float] = []
    i = 0
    while (until is None and len(out) < count) or (until is not None and not until.is_set()):
        t0 = time.perf_counter()
        r = client.get(paths[i % len(paths)])
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        i += 1
    return out


def keywords_csv(n: int) -> bytes:
    words = ["best", "cheap", "review", "guide", "near me", "2026", "how to", "vs", "for beginners", "online"]
    lines = ["Keyword,Volume"] + [f"topic {i // 10} {words[i % 10]} {i},{(i * 37) % 5000}" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keywords", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="import through the JSON endpoint instead of CSV")
    args = parser.parse_args()

    operator_key = f"clop_{secrets.token_urlsafe(32)}"
    with tempfile.TemporaryDirectory(prefix="contentline-bench-") as tmp:
        stack = Stack(state_dir=Path(tmp), extra_env={"CONTENTLINE_OPERATOR_KEY": operator_key})
        try:
            t0 = time.monotonic()
            stack.start_infra()
            stack.start_service("orchestrator")
            print(f"stack up in {time.monotonic() - t0:.1f}s ({stack.infra_source})")
            base = f"{stack.api_url}/api/v1"
            made = httpx.post(
                f"{base}/accounts",
                json={"name": "bench", "initial_credits": "1000"},
                headers={"Authorization": f"Bearer {operator_key}"},
                timeout=30,
            ).json()
            headers = {"Authorization": f"Bearer {made['api_key']['key']}"}
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                site = client.post("/sites", json={"name": "bench"}).json()["id"]
                other = client.post("/sites", json={"name": "reader"}).json()["id"]
                paths = [f"/sites/{other}", f"/sites/{other}/config", f"/accounts/{made['account']['account_id']}"]
                sample_gets(client, paths, None, 30)  # warm up
                idle = sample_gets(client, paths, None, 300)

                data = keywords_csv(args.keywords)
                done = threading.Event()
                outcome: dict[str, object] = {}

                def run_import() -> None:
                    t = time.perf_counter()
                    with httpx.Client(base_url=base, headers=headers, timeout=600) as importer:
                        if args.json:
                            rows = [line.rsplit(",", 1) for line in data.decode().splitlines()[1:]]
                            body = {"keywords": [{"keyword": k, "volume": int(v)} for k, v in rows]}
                            r = importer.post(f"/sites/{site}/keywords", json=body)
                        else:
                            r = importer.post(f"/sites/{site}/keywords/csv", files={"file": ("kw.csv", data)})
                    outcome["status"], outcome["body"] = r.status_code, r.json()
                    outcome["seconds"] = time.perf_counter() - t
                    done.set()

                worker = threading.Thread(target=run_import)
                worker.start()
                busy = sample_gets(client, paths, done, 0)
                worker.join()
        finally:
            stack.stop()

    assert outcome["status"] == 201, outcome
    imported = outcome["body"]["imported"]  # type: ignore[index]
    how = "JSON" if args.json else "CSV upload"
    print(f"\nimport of {args.keywords:,} keywords ({how}, {len(data) / 2**20:.1f} MiB): "
          f"{outcome['seconds']:.1f}s, {imported:,} imported")
    print(f"\n{'GET latency (ms)':<28}{'idle':>10}{'during import':>16}")
    for name, value in (("p50", 50.0), ("p95", 95.0)):
        print(f"{name:<28}{percentile(idle, value):>10.1f}{percentile(busy, value):>16.1f}")
    print(f"{'max':<28}{max(idle):>10.1f}{max(busy):>16.1f}")
    print(f"{'requests':<28}{len(idle):>10}{len(busy):>16}")


if __name__ == "__main__":
    main()
