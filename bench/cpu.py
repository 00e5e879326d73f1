"""CPU time from /proc, for bench/pipeline.py: one process sampled in a thread (the fake provider, whose own work
is taken out of the ratio), and every process of the machine grouped by what it is (which process takes the
cores a run waits for: on a 2-core machine every process's CPU is on the run's critical path)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class CpuSampler:
    """(epoch, cumulative CPU s) of one process every 100 ms, in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), cpu_seconds(self.pid)))
            self._stop.wait(0.1)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def label_of(cmdline: str) -> str:
    """What a process is: a contentline service by its module, the broker, the database, or its program."""
    if found := re.search(r"-m (services\.\w+|fakeai|bench\.\w+|devstack\.\w+)", cmdline):
        return found.group(1).removeprefix("services.")
    if "java" in cmdline and "kafka" in cmdline.lower():
        return "kafka"
    if "postgres" in cmdline:
        return "postgres"
    return Path(cmdline.split(" ", 1)[0]).name or "other"


def cpu_by_label() -> dict[str, float]:
    """Cumulative CPU seconds of every process now running, summed by `label_of`."""
    out: dict[str, float] = defaultdict(float)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmdline:
            out[label_of(cmdline)] += cpu_seconds(int(entry.name))
    return dict(out)


class MachineCpu:
    """CPU seconds by process label between entering and leaving (processes that ended meanwhile are missed)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.wall = 0.0

    def __enter__(self) -> MachineCpu:
        self._start, self._t0 = cpu_by_label(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = cpu_by_label()
        self.wall = time.monotonic() - self._t0
        self.seconds = {k: v - self._start.get(k, 0.0) for k, v in end.items() if v - self._start.get(k, 0.0) >= 0.05}
