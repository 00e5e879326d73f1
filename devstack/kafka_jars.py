"""The local Kafka broker's jars (and those of Kafka's own command-line tools), resolved once from Maven Central
with ``mvn`` (see ``assets/kafka-pom.xml``) into a per-user cache, with a progress line every few seconds.
``python -m devstack.kafka_jars`` (``make kafka-jars``) fetches them ahead of the tests and the stack, where
pytest's capture or the stack's spinner would hide the progress. Stdlib only, like devstack.kafka.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Keep in sync with <kafka.version> in assets/kafka-pom.xml.
KAFKA_VERSION = "4.4.0"

_ASSETS = Path(__file__).resolve().parent / "assets"
_POM = _ASSETS / "kafka-pom.xml"
_MARKER = ".complete"


def jar_cache_dir() -> Path:
    """Where the broker's jars live: $CONTENTLINE_CACHE_DIR or ~/.cache/contentline.

    One directory per pom content: checkouts with different poms (branches, older clones) share the
    cache without re-resolving in turn, and a new pom never replaces the jars of a broker that runs.
    """
    base = os.environ.get("CONTENTLINE_CACHE_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "contentline"
    return root / f"kafka-{KAFKA_VERSION}" / f"libs-{_pom_digest()[:16]}"


def _pom_digest() -> str:
    # The marker records which pom produced the jars: a directory is only used once it is complete.
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


def _cache_is_complete(libs: Path, digest: str) -> bool:
    try:
        return (libs / _MARKER).read_text().strip() == digest
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Serialises concurrent resolvers (parallel test sessions, CLI + tests) on one cache.
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_DOWNLOADING = re.compile(r"^Downloading from \S+: (\S+)")
_DOWNLOADED = re.compile(r"^Downloaded from \S+: (\S+) \(([\d.,]+) ([kMG]?B)")
_COPYING = re.compile(r"^\[INFO\] Copying (\S+) to ")
_GOAL = re.compile(r"^\[INFO\] --- (\S+)")
_UNIT = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


class DownloadProgress:
    """A line every few seconds while mvn works, also when it prints nothing (resolving, checking for updates):
    elapsed time, files and megabytes downloaded so far, and the file it is on (mvn -B prints "Downloading from
    central: <url>", "Downloaded ... (12 MB at 3 MB/s)" and "[INFO] Copying <jar> to ..."). A context manager."""

    def __init__(self, what: str, every: float = 5.0, out: Any = None) -> None:
        self.what, self.every, self.out = what, every, out
        self.files, self.bytes, self.current = 0, 0.0, "starting Maven"
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="mvn-progress", daemon=True)

    def __enter__(self) -> DownloadProgress:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ticker.join()

    def feed(self, line: str) -> None:
        if match := _DOWNLOADING.match(line):
            self.current = f"downloading {match[1].rsplit('/', 1)[-1]}"
        elif match := _DOWNLOADED.match(line):
            self.files += 1
            self.bytes += float(match[2].replace(",", "")) * _UNIT[match[3]]
        elif match := _COPYING.match(line):
            self.current = f"copying {match[1].rsplit('/', 1)[-1]}"
        elif _GOAL.match(line):
            self.current = "resolving the dependency tree (asks Maven Central for what ~/.m2 lacks)"

    def status(self) -> str:
        return (f"{self.what}: {time.monotonic() - self.started:.0f}s, {self.files} files "
                f"({self.bytes / 1e6:.1f} MB) downloaded")  # fmt: skip

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.say(f"{self.status()}; {self.current}")

    def say(self, text: str) -> None:
        out = self.out or sys.stderr
        out.write(text + "\n")
        out.flush()


def _run_capturing_tail(cmd: list[str], quiet: bool, keep: int = 60, progress: DownloadProgress | None = None
                        ) -> tuple[int, str]:  # fmt: skip
    """Run cmd; echo its output to stderr unless quiet (feeding `progress` instead); return (exit code, last
    `keep` lines)."""
    tail: deque[str] = deque(maxlen=keep)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if not quiet:
                sys.stderr.write(line)
            elif progress is not None:
                progress.feed(line)
    return proc.wait(), "\n".join(tail)


def ensure_kafka_jars(quiet: bool = True) -> Path:
    """Return the directory holding the broker's runtime jars, downloading them on first use.

    The jars are copied into a temporary sibling directory and renamed into place only once mvn
    succeeded, with a marker file written last, so an interrupted download is never mistaken for
    a complete one. `quiet` shows a progress line every few seconds instead of mvn's whole output.
    """
    libs = jar_cache_dir()
    digest = _pom_digest()
    if _cache_is_complete(libs, digest):
        return libs

    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "Maven ('mvn') is not on PATH; it is needed once to download the Kafka broker jars "
            f"into {libs} (e.g. apt-get install maven)."
        )

    libs.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs.parent / ".lock"):
        if _cache_is_complete(libs, digest):  # another process finished while we waited
            return libs
        staging = Path(tempfile.mkdtemp(prefix=".libs-", dir=libs.parent))
        try:
            # mvn runs on a copy of the pom so it never writes (target/ etc.) into the source tree.
            pom = staging / "pom.xml"
            shutil.copyfile(_POM, pom)
            out = staging / "libs"
            # Not -q: its "Downloaded ... (size)" lines feed the progress line (batch mode: no per-kB bars).
            cmd = [mvn, "-B", "-U"]
            cmd += [
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={out}",
            ]
            progress = DownloadProgress(f"Kafka {KAFKA_VERSION} jars") if quiet else None
            with progress or contextlib.nullcontext():
                if progress is not None:
                    progress.say(f"Fetching Apache Kafka {KAFKA_VERSION} (broker and tools) with Maven into {libs} "
                                 "(once; ~100 MB from Maven Central unless ~/.m2 has them; a minute or more)...")
                code, tail = _run_capturing_tail(cmd, quiet, progress=progress)
            expected = [out / f"kafka_2.13-{KAFKA_VERSION}.jar", out / f"kafka-tools-{KAFKA_VERSION}.jar"]
            if code != 0 or not all(jar.is_file() for jar in expected):
                raise RuntimeError(
                    f"Resolving Kafka {KAFKA_VERSION} jars with Maven failed (exit code {code}).\n"
                    f"Command: {' '.join(cmd)}\n--- mvn output (tail) ---\n{tail}"
                )
            if progress is not None:
                progress.say(f"{progress.status()}: done")
            (out / _MARKER).write_text(digest + "\n")
            if libs.exists():  # an interrupted earlier attempt (no marker)
                shutil.rmtree(libs)
            out.rename(libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def main() -> int:
    """`python -m devstack.kafka_jars`: fetch the broker's jars now, with progress (the Makefile runs it before
    the tests and the stack, where pytest or a spinner would hide it). Nothing to do when Kafka comes from
    elsewhere."""
    if os.environ.get("CONTENTLINE_STACK_KAFKA"):
        print(f"Kafka at {os.environ['CONTENTLINE_STACK_KAFKA']} (CONTENTLINE_STACK_KAFKA): no jars needed")
        return 0
    if _cache_is_complete(jar_cache_dir(), _pom_digest()):
        return 0
    try:  # the stack takes Kafka from testcontainers where a Docker engine answers (devstack.stack)
        from devstack.containers import docker_available

        if docker_available():
            print("a Docker engine answers: Kafka comes from testcontainers, no jars needed")
            return 0
    except ImportError:  # run before the project's dependencies are installed
        pass
    from devstack.kafka import java_executable

    try:
        java_executable()  # Kafka needs it anyway: say so now, not after the download
        ensure_kafka_jars()
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
