"""The whole contentline stack on one machine: Kafka, PostgreSQL, the fake AI provider, six services, and on
request a real WordPress (Debian's package with a private MariaDB, see devstack.wordpress).

Where Kafka and PostgreSQL come from (one decision, used by the demo and the test fixture):
1. `CONTENTLINE_STACK_KAFKA` + `CONTENTLINE_STACK_DATABASE_URL` point at running servers → use them;
2. otherwise, a Docker engine answers → testcontainers;
3. otherwise → the project's own launchers (Kafka from Maven Central jars, Debian's PostgreSQL).
It never gives up quietly: a server that cannot be had raises with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from devstack import kafka as local_kafka
from devstack import postgres as local_pg
from devstack import wordpress as local_wp
from devstack.containers import docker_available, start_containers
from devstack.ports import free_port

log = logging.getLogger("devstack")
ROOT = Path(__file__).resolve().parents[1]
# The publisher starts without any WordPress: it reads each site's connection when a publish command comes.
WORKERS = ("clusterer", "ideator", "writer", "imager", "publisher")
_AI_PROVIDER = re.compile(r"^(OPENAI_\w+|CONTENTLINE_(OPENAI|CHAT|EMBEDDING|IMAGE)_(BASE_URL|API_KEY|API_VERSION))$")
SERVICES = ("orchestrator", *WORKERS, "webhooks", "rules")


def _settings_vars() -> set[str]:
    """The CONTENTLINE_* names the services read (launcher variables such as CONTENTLINE_STACK_* are not)."""
    from shared.settings import Settings

    return {f"CONTENTLINE_{name.upper()}" for name in Settings.model_fields}


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log_file: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_file.read_text()[-3000:] if log_file and log_file.exists() else ""
            raise RuntimeError(f"process for {url} exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s")


def _exited(what: str, proc: subprocess.Popen[bytes], log_file: Path) -> RuntimeError:
    tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
    return RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")


def wait_health(url: str, token: str, timeout: float, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    """Wait until `url` answers 200 with this start's `token` as `instance`: only then did we reach `proc`.

    A 200 without the token comes from another process on the port (taken between the free-port check and
    the bind, or an older instance): it is never taken for ours, and is named if `proc` then dies.
    """
    deadline = time.monotonic() + timeout
    foreign = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = _exited(f"process for {url}", proc, log_file)
            if foreign:
                err = RuntimeError(f"{err}\nmeanwhile {url} was answered by another process ({foreign})")
            raise err
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as response:
            body = json.loads(response.read() or b"null")
            instance = body.get("instance") if isinstance(body, dict) else None
            if response.status == 200 and instance == token:
                return
            foreign = f"HTTP {response.status}, instance {instance!r} instead of this start's token"
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer with this start's token within {timeout:.0f}s" + (
        f"; another process answers there ({foreign})" if foreign else ""))


def wait_ready_file(path: Path, token: str, timeout: float, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    """Wait until the process wrote this start's `token` to `path` (after its broker and relay started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(f"{log_file.stem} (pid {proc.pid})", proc, log_file)
        with contextlib.suppress(OSError):
            if path.read_text() == token:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{log_file.stem} (pid {proc.pid}) did not report ready in {path} within {timeout:.0f}s")


LOCAL_MODEL_CHAT_TIMEOUT = 240  # seconds; see Stack.ai_env


@dataclass
class Stack:
    state_dir: Path
    use_fake_ai: bool = True
    # Chat from a real model (llama-server, devstack/llama.py) through CONTENTLINE_CHAT_BASE_URL; the fake keeps
    # embeddings and images (the common OPENAI_BASE_URL). Needs use_fake_ai.
    local_model: bool = False
    api_port: int = field(default_factory=free_port)
    fake_port: int = field(default_factory=free_port)
    llama_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    # Start a local WordPress with the stack (start_all); tests start it on demand with start_wordpress().
    with_wordpress: bool = False
    wordpress: local_wp.WordPressProcess | None = None
    # The local PostgreSQL is durable like production; fsync/synchronous_commit/full_page_writes go off
    # only when a caller asks for it here (faster commits; a server crash loses acknowledged ones).
    unsafe_fast_db: bool = False
    # "local": the project's own launchers even when Docker or external servers are around (the fault
    # suite kills and restarts Kafka and PostgreSQL as processes).
    infra: Literal["auto", "local"] = "auto"
    kafka_bootstrap: str = ""
    database_url: str = ""
    infra_source: str = ""
    _stoppers: list[Any] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Per start of each service: /health echoes it (orchestrator), every service writes it to its ready file.
    tokens: dict[str, str] = field(default_factory=dict)
    pg: local_pg.PostgresProcess | None = None
    broker: local_kafka.KafkaProcess | None = None
    _ports: dict[str, int] = field(default_factory=dict)
    # Each service's /metrics port (CONTENTLINE_METRICS_PORT), kept across its restarts.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    def ai_env(self) -> dict[str, str]:
        """The AI providers the services get with the fake: the fake for every function, except chat from
        llama-server with `local_model` (per-function base URLs, shared/ai/config.py)."""
        if not self.use_fake_ai:
            return {}
        env = {"OPENAI_BASE_URL": f"{self.fake_url}/v1", "OPENAI_API_KEY": "fake-key"}
        if self.local_model and self.llama_url:
            from devstack.llama import MODEL_ALIAS, ServerOptions

            # The model name: usage records name the model that answered (llama-server ignores it).
            env |= {"CONTENTLINE_CHAT_BASE_URL": f"{self.llama_url}/v1", "CONTENTLINE_CHAT_MODEL": MODEL_ALIAS}
            # No more requests in flight per service than the server has slots: a request queued inside the
            # server spends its timeout waiting, then is cut off and asked again from the start (unless the
            # caller chose a number).
            # And a timeout for a small model on shared CPU cores (2-45 tokens/s measured): the client would
            # grow 60 s to this after two timed-out attempts, in every worker, each time wasting the attempts.
            defaults = {"CONTENTLINE_CHAT_MAX_CONCURRENCY": str(ServerOptions.from_env().parallel),
                        "CONTENTLINE_CHAT_TIMEOUT_SECONDS": str(LOCAL_MODEL_CHAT_TIMEOUT)}  # fmt: skip
            env |= {k: v for k, v in defaults.items() if k not in os.environ}
        return env

    def metrics_url(self, name: str) -> str:
        """Where service `name` serves /metrics (once started)."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    @property
    def media_dir(self) -> Path:
        return self.state_dir / "media"

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    @property
    def secret_key(self) -> str:
        """CONTENTLINE_SECRET_KEY of this stack's services (encrypts stored secrets): a Fernet key made once per
        state dir, so the rows encrypted with it stay readable across restarts."""
        key_file = self.state_dir / "secret.key"
        if not key_file.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
        return key_file.read_text().strip()
    def ready_path(self, name: str) -> Path:
        return self.state_dir / "run" / f"{name}.ready"

    # ---------------------------------------------------------------- infrastructure
    def start_infra(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        ext_kafka, ext_db = os.environ.get("CONTENTLINE_STACK_KAFKA"), os.environ.get("CONTENTLINE_STACK_DATABASE_URL")
        if self.infra == "local":
            self._start_local()
        elif ext_kafka and ext_db:
            self.kafka_bootstrap, self.database_url, self.infra_source = ext_kafka, ext_db, "external"
        elif docker_available():
            infra = start_containers()
            self._stoppers.append(infra.stop)
            self.kafka_bootstrap, self.database_url, self.infra_source = (
                infra.kafka_bootstrap, infra.database_url, "testcontainers")
        else:
            self._start_local()
        self._migrate_and_create_topics()

    def _start_local(self) -> None:
        local_kafka.ensure_kafka_jars()
        local_pg.ensure_postgres_installed()
        # Both start at once: Kafka's JVM warm-up dominates, PostgreSQL is ready well before it.
        self._ports = {"kafka": free_port(), "controller": free_port(), "postgres": free_port()}
        with contextlib.ExitStack() as undo:
            self.start_postgres()
            undo.callback(self.stop_postgres)
            self.start_broker(fresh=True)
            undo.callback(self.stop_broker)
            self._stoppers += [self.stop_postgres, self.stop_broker]
            undo.pop_all()
        assert self.pg is not None and self.broker is not None
        self.kafka_bootstrap, self.database_url, self.infra_source = self.broker.bootstrap, self.pg.url, "local"

    # The local servers as processes (the fault suite): same ports and data dirs across restarts, so the
    # services' configuration stays valid.
    def _local(self) -> None:
        if not self._ports:
            raise RuntimeError(f"Kafka/PostgreSQL come from {self.infra_source or 'nowhere yet'}, not the local "
                               "launchers: Stack(infra='local') to control them as processes")

    def start_postgres(self, unsafe_fast: bool | None = None, settings: dict[str, str] | None = None) -> None:
        """Start (or restart after a crash, replaying the WAL) the local cluster; durable unless asked."""
        self._local()
        self.pg = local_pg.start_postgres(
            self.state_dir / "postgres", port=self._ports["postgres"], fresh=self.pg is None,
            unsafe_fast=self.unsafe_fast_db if unsafe_fast is None else unsafe_fast, settings=settings)

    def kill_postgres(self) -> None:
        """`pg_ctl stop -m immediate`: no checkpoint, open transactions die with the server (a crash)."""
        self._local()
        if self.pg is not None:
            self.pg.stop(mode="immediate")

    def stop_postgres(self) -> None:
        if self.pg is not None:
            self.pg.stop()

    def start_broker(self, fresh: bool = False) -> None:
        """Start the local broker; `fresh=False` keeps its data dir (a restart: topics and offsets survive)."""
        self._local()
        self.broker = local_kafka.start_kafka(
            self.state_dir / "kafka", port=self._ports["kafka"], controller_port=self._ports["controller"], fresh=fresh)

    def kill_broker(self) -> None:
        """SIGKILL the Kafka JVM (no controlled shutdown)."""
        self._local()
        if self.broker is not None:
            self.broker.kill()

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def _migrate_and_create_topics(self) -> None:
        from shared.db.migrate import upgrade
        from shared.kafka import ensure_topics
        from shared.topics import ALL_TOPICS

        upgrade(self.database_url)
        asyncio.run(ensure_topics(self.kafka_bootstrap, 6))
        asyncio.run(_wait_topics(self.kafka_bootstrap, ALL_TOPICS))

    # ---------------------------------------------------------------- processes
    def env(self) -> dict[str, str]:
        # The caller's CONTENTLINE_* and OPENAI_* reach the services (models, timeouts, per-function providers,
        # e.g. for `--real-ai`); what the stack decides (infrastructure, ports, paths) is set below and wins.
        # With the fake AI, every provider is the fake: the caller's provider URLs and keys are left out.
        settings = _settings_vars()
        env = {
            k: v
            for k, v in os.environ.items()
            if (not k.startswith("CONTENTLINE_") or k in settings) and not (self.use_fake_ai and _AI_PROVIDER.match(k))
        }
        env |= {
            "CONTENTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CONTENTLINE_DATABASE_URL": self.database_url,
            "CONTENTLINE_API_PORT": str(self.api_port),
            "CONTENTLINE_MEDIA_DIR": str(self.media_dir),
            "CONTENTLINE_SECRET_KEY": self.secret_key,
            "CONTENTLINE_TICK_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env |= self.ai_env()
        env |= self.extra_env
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_file = self.log_path(name).open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env() | (env or {}), stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        self.procs[name] = proc
        return proc

    def start_fake_ai(self) -> None:
        if not self.use_fake_ai:
            return
        proc = self._spawn("fakeai", ["-m", "fakeai", "--host", "127.0.0.1", "--port", str(self.fake_port)])
        wait_http(f"{self.fake_url}/health", 30, proc, self.log_path("fakeai"))

    def start_local_model(self) -> None:
        """llama-server (built and cached on first use: 15-30 min); the services' chat goes to it."""
        if not self.local_model:
            return
        if not self.use_fake_ai:
            raise RuntimeError("local_model needs the fake AI for embeddings and images (use_fake_ai=True)")
        from devstack.llama import start_llama_server

        # The media dir in its environment lets `python -m devstack` find it if this process dies unannounced.
        env = self.env() | {"CONTENTLINE_MEDIA_DIR": str(self.media_dir.resolve())}
        server = start_llama_server(self.log_path("llama-server"), env=env)
        self.procs["llama-server"], self.llama_url = server.proc, server.url

    def start_service(self, name: str, wait: bool = True) -> None:
        """Start `name` with a fresh token; with `wait`, return once it proved it is up (see wait_ready)."""
        token = self.tokens[name] = secrets.token_urlsafe(16)
        ready = self.ready_path(name)
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.unlink(missing_ok=True)
        metrics_port = self.metrics_ports.setdefault(name, free_port())
        self._spawn(name, ["-m", f"services.{name}"],
                    {"CONTENTLINE_INSTANCE_TOKEN": token, "CONTENTLINE_READY_FILE": str(ready.resolve()),
                     "CONTENTLINE_METRICS_PORT": str(metrics_port)})
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 180) -> None:
        """The orchestrator: /health echoes this start's token; a worker: its ready file holds it."""
        proc, token = self.procs[name], self.tokens[name]
        if name == "orchestrator":
            wait_health(f"{self.api_url}/health", token, timeout, proc, self.log_path(name))
        else:
            wait_ready_file(self.ready_path(name), token, timeout, proc, self.log_path(name))

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        """Start several at once (their start-ups overlap), then wait for each."""
        for name in names:
            self.start_service(name, wait=False)
        for name in names:
            self.wait_ready(name)

    def stop_service(self, name: str, timeout: float = 30.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # graceful: in-flight work finishes, offsets commit
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill_service(self, name: str) -> None:
        """kill -9 (its whole process group: it runs in a session of its own): no shutdown code runs."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def start_wordpress(self) -> local_wp.WordPressProcess:
        """The local WordPress (started once, stopped with the stack): url, admin user, application password."""
        if self.wordpress is None:
            self.wordpress = local_wp.start_wordpress(self.state_dir / "wordpress", free_port(), free_port())
            self._stoppers.append(self.wordpress.stop)
            log.info("WordPress %s at %s in %.1fs", self.wordpress.version, self.wordpress.url,
                     self.wordpress.start_seconds)  # fmt: skip
        return self.wordpress

    def start_all(self) -> None:
        self.start_infra()
        if self.with_wordpress:
            self.start_wordpress()
        self.start_fake_ai()
        self.start_local_model()
        self.start_services()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_service(name)
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()
        self.wordpress = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _wait_topics(bootstrap: str, topics: tuple[str, ...], wait_seconds: float = 60) -> None:
    """Right after creation a topic can have no leader yet; producing then fails. Wait for leaders."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        deadline = time.monotonic() + wait_seconds
        for topic in topics:
            while not await producer.partitions_for(topic):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {topic} has no partitions after {wait_seconds}s")
                await asyncio.sleep(0.2)
    finally:
        await producer.stop()
