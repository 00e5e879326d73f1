"""A real local Apache Kafka broker (KRaft, single combined broker+controller node), no Docker.

The broker's runtime classpath (and that of Kafka's own command-line tools) is resolved once from
Maven Central with ``mvn`` into a per-user cache (``devstack/kafka_jars.py``); each start gets a
freshly formatted data dir and runs the JVM detached in its own session, so it outlives the process
that started it (the CLI's ``up``/``down``) and a terminal Ctrl-C does not reach it. Next to the
broker's state, ``bin/`` holds wrappers for Kafka's tools (``kafka-topics``,
``kafka-consumer-groups``, ...) preset to this broker (``devstack/kafka_tools.py``). Stdlib only on
purpose: this module has to work before the project's own dependencies are installed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# The jars live in devstack.kafka_jars; re-exported because the stack and the tools wrappers import them here.
from devstack.kafka_jars import _ASSETS, KAFKA_VERSION, ensure_kafka_jars, jar_cache_dir

__all__ = ["KAFKA_VERSION", "KafkaProcess", "ensure_kafka_jars", "jar_cache_dir", "java_executable", "start_kafka"]

_LOG4J_CONFIG = _ASSETS / "log4j2.properties"
_PIDFILE = "kafka.pid"
_LOG = "kafka.log"  # written by log4j (see assets/log4j2.properties)
_OUT = "kafka.out"  # JVM stdout/stderr: warnings, and errors raised before log4j is up
_MAIN_CLASS = "kafka.Kafka"


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (where the broker binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Java binds with SO_REUSEADDR too, so TIME_WAIT leftovers of a stopped broker don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- process handling -------------------------------------------------------------------------


def _is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs (not Linux): fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # A zombie has exited; it only waits for its parent to reap it.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_broker_of(pid: int, state_dir: Path) -> bool:
    """Guard against pid reuse: is `pid` the broker we started for this state dir?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _is_alive(pid)  # without procfs the pidfile is all we have
    props = str(state_dir / "server.properties").encode()
    return _MAIN_CLASS.encode() in cmdline and props in cmdline


def _terminate(pid: int, timeout: float, popen: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (Kafka shuts down cleanly on it), then SIGKILL once `timeout` has passed."""
    if popen is not None:
        # Our own child: wait() reaps it, so no zombie stays behind in a long-lived test process.
        if popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        return

    def send(sig: int) -> bool:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    if not _is_alive(pid) or not send(signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while _is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _remove_pidfile(state_dir: Path, pid: int) -> None:
    pidfile = state_dir / _PIDFILE
    with contextlib.suppress(OSError, ValueError):
        if int(pidfile.read_text().strip()) == pid:
            pidfile.unlink()


@dataclass
class KafkaProcess:
    """A running local broker. `stop()` it when done; it is not tied to this Python process."""

    bootstrap: str
    pid: int
    state_dir: Path
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def bin_dir(self) -> Path:
        """Kafka's CLI tools preset to this broker (see devstack.kafka_tools)."""
        return self.state_dir / "bin"

    def kill(self) -> None:
        """SIGKILL the JVM, like a crash or the OOM killer (the fault suite); no clean shutdown at all."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self._popen.kill()
            self._popen.wait(30)
        elif _is_broker_of(self.pid, self.state_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while _is_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        _remove_pidfile(self.state_dir, self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after `timeout` seconds. Safe to call twice."""
        if self._popen is not None:
            _terminate(self.pid, timeout, self._popen)
        elif _is_broker_of(self.pid, self.state_dir):
            _terminate(self.pid, timeout, None)
        _remove_pidfile(self.state_dir, self.pid)


def stop_kafka_from_pidfile(state_dir: Path) -> None:
    """Stop the broker recorded in state_dir/kafka.pid (the CLI's `down`); no-op if none runs."""
    state_dir = state_dir.resolve()
    pidfile = state_dir / _PIDFILE
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if _is_broker_of(pid, state_dir):
        _terminate(pid, 15.0, None)
    with contextlib.suppress(OSError):
        pidfile.unlink()


# --- readiness probe: a minimal Kafka wire-protocol client ------------------------------------
# A TCP connect alone is not enough: KRaft binds the listener early but only serves requests once
# the broker caught up with the metadata log and got unfenced. A Metadata answer listing a broker
# means clients can work (create topics, produce, join groups) from now on.

_API_METADATA = 3
_API_VERSIONS = 18
# Oldest Metadata version Kafka 4.x still serves (KIP-896); non-flexible, so easy to encode.
_METADATA_VERSION = 4
_CLIENT_ID = b"contentline-devstack-probe"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    """Send one request (header v1) and return the response body (after header v0)."""
    header = struct.pack(">hhih", api_key, version, corr, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    resp = _recv_exact(sock, size)
    if struct.unpack(">i", resp[:4])[0] != corr:
        raise ConnectionError("unexpected correlation id")
    return resp[4:]


def _broker_ready(port: int, timeout: float = 3.0) -> bool:
    """True once the broker answers ApiVersions and a Metadata request that lists a broker."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            # ApiVersions v0 is accepted by every broker version.
            resp = _call(sock, _API_VERSIONS, 0, 1, b"")
            (error,) = struct.unpack(">h", resp[:2])
            if error != 0:
                return False
            (count,) = struct.unpack(">i", resp[2:6])
            ranges = {key: (lo, hi) for key, lo, hi in struct.iter_unpack(">hhh", resp[6 : 6 + 6 * count])}
            lo, hi = ranges.get(_API_METADATA, (0, -1))
            if not lo <= _METADATA_VERSION <= hi:
                return True  # a future broker dropped v4: answering ApiVersions has to suffice
            # Metadata v4: topics = null (all), allow_auto_topic_creation = false.
            body = struct.pack(">ib", -1, 0)
            resp = _call(sock, _API_METADATA, _METADATA_VERSION, 2, body)
            (brokers,) = struct.unpack(">i", resp[4:8])  # after throttle_time_ms
            return int(brokers) > 0
    except (OSError, struct.error):
        return False  # refused, reset, timed out, short read: not ready yet


# --- start -------------------------------------------------------------------------------------


def _log_tail(state_dir: Path, lines: int = 40) -> str:
    parts = []
    for name in (_LOG, _OUT):
        try:
            text = (state_dir / name).read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {state_dir / name} (last {lines} lines) ---\n{tail}")
    return "\n".join(parts) or f"(no output in {state_dir / _LOG} or {state_dir / _OUT})"


def _heap_mib(heap: str) -> float | None:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", heap.strip())
    if match is None:
        return None
    scale = {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[match.group(2).lower()]
    return int(match.group(1)) * scale


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("No 'java' on PATH (and no JAVA_HOME); Kafka 4.x needs Java 17+.")
    return java


def _jvm_args(java: str, libs: Path, state_dir: Path, heap: str, short_lived: bool = False) -> list[str]:
    mib = _heap_mib(heap)
    # -Xms above -Xmx makes the JVM refuse to start, so small heaps also lower the initial size.
    xms = heap if mib is not None and mib < 256 else "256m"
    # A one-shot tool (StorageTool) never gets hot: skipping the C2 JIT saves ~0.4 s of CPU.
    tiered = ["-XX:TieredStopAtLevel=1"] if short_lived else []
    return [
        java,
        *tiered,
        "-XX:+UseG1GC",
        f"-Xms{xms}",
        f"-Xmx{heap}",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={state_dir}",
        "-cp",
        str(libs / "*"),  # the JVM expands the wildcard itself; no shell involved
    ]


def _new_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid(): 16 random bytes, url-safe base64, unpadded. Like
    # Kafka, avoid a leading '-', which command-line parsers would take for an option.
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "6",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Topics are created explicitly by the services/tests; a typo must not create a topic.
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        # Single node: internal topics can only have one replica. One partition each also keeps
        # the first consumer-group/transaction use fast (the default is 50 partitions).
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests start consumers one after another; don't wait 3 s for more members to join.
        "group.initial.rebalance.delay.ms": "0",
        # Fewer threads and a smaller compaction buffer (default 128 MiB of heap): a dev box
        # runs this next to everything else.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "log.cleaner.dedupe.buffer.size": str(32 * 2**20),
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def start_kafka(
    state_dir: Path,
    port: int = 19092,
    controller_port: int = 19093,
    heap: str = "1g",
    ready_timeout: float = 90.0,
    fresh: bool = True,
) -> KafkaProcess:
    """Start a single-node broker on 127.0.0.1:port and wait until it serves clients.

    ``fresh``: all data in state_dir/data is wiped first and formatted anew. Otherwise the data dir
    of an earlier start is kept (a restart after a crash: the broker recovers its logs, topics and
    committed offsets), and formatted only if it never was. A broker still running from an earlier
    start on the same state_dir is stopped. Raises RuntimeError (with the log's tail) if it fails.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # An earlier broker on this dir would be writing into the data dir we are about to wipe.
    stop_kafka_from_pidfile(state_dir)
    busy = [p for p in (port, controller_port) if not port_is_free(p)]
    if busy:
        raise RuntimeError(f"Cannot start Kafka: port(s) {busy} on 127.0.0.1 are in use.")

    libs = ensure_kafka_jars()
    java = java_executable()
    data_dir = state_dir / "data"
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    # One run per log file, so the tail quoted in errors is about this run (a restart keeps the last one).
    for name in (_LOG, _OUT):
        if fresh:
            (state_dir / name).unlink(missing_ok=True)
        elif (state_dir / name).exists():
            (state_dir / name).replace(state_dir / f"{name}.previous")
    props = state_dir / "server.properties"
    props.write_text(_server_properties(data_dir, port, controller_port))
    # Kafka's own CLI tools, preset to this broker (a late import: kafka_tools builds on this module).
    from devstack.kafka_tools import write_tool_wrappers

    write_tool_wrappers(state_dir / "bin", f"127.0.0.1:{port}", libs)

    if not fresh and (data_dir / "meta.properties").exists():
        return _launch(java, libs, state_dir, props, port, heap, ready_timeout)
    # KRaft refuses to start on an unformatted dir; static controller.quorum.voters means no
    # --standalone flag.
    fmt_args = ["kafka.tools.StorageTool", "format", "-t", _new_cluster_id(), "-c", str(props)]
    fmt = subprocess.run(
        [*_jvm_args(java, libs, state_dir, "256m", short_lived=True), *fmt_args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    if fmt.returncode != 0:
        output = "\n".join((fmt.stdout + fmt.stderr).splitlines()[-40:])
        raise RuntimeError(f"Formatting {data_dir} failed (exit {fmt.returncode}):\n{output}")
    return _launch(java, libs, state_dir, props, port, heap, ready_timeout)


def _launch(
    java: str, libs: Path, state_dir: Path, props: Path, port: int, heap: str, ready_timeout: float
) -> KafkaProcess:
    """Run the broker JVM detached and wait until it serves clients."""
    with open(state_dir / _OUT, "wb") as out:
        popen = subprocess.Popen(
            [*_jvm_args(java, libs, state_dir, heap), _MAIN_CLASS, str(props)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            start_new_session=True,
        )
    (state_dir / _PIDFILE).write_text(f"{popen.pid}\n")
    proc = KafkaProcess(f"127.0.0.1:{port}", popen.pid, state_dir, popen)

    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            code = popen.poll()
            if code is not None:
                raise RuntimeError(f"Kafka exited with code {code} during startup.\n{_log_tail(state_dir)}")
            if _broker_ready(port):
                return proc
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kafka did not become ready on 127.0.0.1:{port} within {ready_timeout:.0f}s."
                    f"\n{_log_tail(state_dir)}"
                )
            time.sleep(0.2)
    except BaseException:
        # Never leave a half-started JVM behind (also on Ctrl-C).
        proc.stop(timeout=5.0)
        raise
