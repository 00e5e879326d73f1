"""The whole contentline stack on one machine: Kafka, PostgreSQL, the fake AI provider, five services.

Where Kafka and PostgreSQL come from (one decision, used by the demo and the test fixture):
1. `CONTENTLINE_STACK_KAFKA` + `CONTENTLINE_STACK_DATABASE_URL` point at running servers → use them;
2. otherwise, a Docker engine answers → testcontainers;
3. otherwise → the project's own launchers (Kafka from Maven Central jars, Debian's PostgreSQL).
It never gives up quietly: a server that cannot be had raises with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import kafka as local_kafka
from devstack import postgres as local_pg
from devstack.containers import docker_available, start_containers

log = logging.getLogger("devstack")
ROOT = Path(__file__).resolve().parents[1]
WORKERS = ("clusterer", "ideator", "writer", "imager")
SERVICES = ("orchestrator", *WORKERS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@dataclass
class Stack:
    state_dir: Path
    use_fake_ai: bool = True
    # Chat from a real model (llama-server, devstack/llama.py) behind devstack/aigateway.py; the fake keeps
    # embeddings and images. Needs use_fake_ai.
    local_model: bool = False
    api_port: int = field(default_factory=free_port)
    fake_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    llama_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    kafka_bootstrap: str = ""
    database_url: str = ""
    infra_source: str = ""
    _stoppers: list[Any] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def ai_url(self) -> str:
        """The OpenAI-compatible base URL the services get (without /v1)."""
        return f"http://127.0.0.1:{self.gateway_port}" if self.local_model else self.fake_url

    @property
    def media_dir(self) -> Path:
        return self.state_dir / "media"

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    # ---------------------------------------------------------------- infrastructure
    def start_infra(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        ext_kafka, ext_db = os.environ.get("CONTENTLINE_STACK_KAFKA"), os.environ.get("CONTENTLINE_STACK_DATABASE_URL")
        if ext_kafka and ext_db:
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
        kafka_port, controller_port, pg_port = free_port(), free_port(), free_port()
        with contextlib.ExitStack() as undo:
            pg = local_pg.start_postgres(self.state_dir / "postgres", port=pg_port)
            undo.callback(pg.stop)
            broker = local_kafka.start_kafka(self.state_dir / "kafka", port=kafka_port, controller_port=controller_port)
            undo.callback(broker.stop)
            self._stoppers += [pg.stop, broker.stop]
            undo.pop_all()
        self.kafka_bootstrap, self.database_url, self.infra_source = broker.bootstrap, pg.url, "local"

    def _migrate_and_create_topics(self) -> None:
        from shared.db.migrate import upgrade
        from shared.kafka import ensure_topics
        from shared.topics import ALL_TOPICS

        upgrade(self.database_url)
        asyncio.run(ensure_topics(self.kafka_bootstrap, 6))
        asyncio.run(_wait_topics(self.kafka_bootstrap, ALL_TOPICS))

    # ---------------------------------------------------------------- processes
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTLINE_")}
        env |= {
            "CONTENTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CONTENTLINE_DATABASE_URL": self.database_url,
            "CONTENTLINE_API_PORT": str(self.api_port),
            "CONTENTLINE_MEDIA_DIR": str(self.media_dir),
            "CONTENTLINE_TICK_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if self.use_fake_ai:
            env |= {"OPENAI_BASE_URL": f"{self.ai_url}/v1", "OPENAI_API_KEY": "fake-key"}
        if self.local_model:
            from devstack.llama import MODEL_ALIAS

            env["CONTENTLINE_CHAT_MODEL"] = MODEL_ALIAS  # usage records name the model that answered
        env |= self.extra_env
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log_file = self.log_path(name).open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env(), stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
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
        """llama-server (built and cached on first use: 15-30 min) and the gateway in front of it and the fake."""
        if not self.local_model:
            return
        if not self.use_fake_ai:
            raise RuntimeError("local_model needs the fake AI for embeddings and images (use_fake_ai=True)")
        from devstack.llama import start_llama_server

        # The media dir in its environment lets `python -m devstack` find it if this process dies unannounced.
        env = self.env() | {"CONTENTLINE_MEDIA_DIR": str(self.media_dir.resolve())}
        server = start_llama_server(self.log_path("llama-server"), env=env)
        self.procs["llama-server"], self.llama_url = server.proc, server.url
        proc = self._spawn("aigateway", ["-m", "devstack.aigateway", "--chat-url", server.url,
                                         "--fallback-url", self.fake_url, "--port", str(self.gateway_port)])
        wait_http(f"{self.ai_url}/_gateway/health", 30, proc, self.log_path("aigateway"))

    def start_service(self, name: str) -> None:
        proc = self._spawn(name, ["-m", f"services.{name}"])
        if name == "orchestrator":
            wait_http(f"{self.api_url}/health", 60, proc, self.log_path(name))

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
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def start_all(self) -> None:
        self.start_infra()
        self.start_fake_ai()
        self.start_local_model()
        for name in SERVICES:
            self.start_service(name)

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_service(name)
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()

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
