"""A started service counts as up only when it proves it is this start's process: /health echoing the start's
token (the orchestrator), or a ready file holding it (every service). A 200 from another process on the port,
or a ready file left by an earlier start, is never taken for ours."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack.stack import wait_health, wait_ready_file


def serve_health(instance: str | None) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "instance": instance}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn("import time; time.sleep(60)")
    yield proc
    proc.kill()
    proc.wait()


def test_health_with_this_starts_token_is_accepted(sleeper: subprocess.Popen[bytes], tmp_path: Path) -> None:
    server = serve_health("tok-1")
    try:
        wait_health(f"http://127.0.0.1:{server.server_port}/health", "tok-1", 5, sleeper, tmp_path / "x.log")
    finally:
        server.shutdown()


@pytest.mark.parametrize("instance", [None, "tok-of-an-older-start"])
def test_a_200_from_another_process_is_not_ours(instance: str | None, tmp_path: Path) -> None:
    server = serve_health(instance)  # the port's holder answers 200; our process then fails to bind and exits
    ours = spawn("import time, sys; time.sleep(1); sys.exit(1)")
    log = tmp_path / "orchestrator.log"
    log.write_text("ERROR: [Errno 98] address already in use\n")
    try:
        with pytest.raises(RuntimeError) as caught:
            wait_health(f"http://127.0.0.1:{server.server_port}/health", "tok-1", 10, ours, log)
    finally:
        server.shutdown()
        ours.wait()
    message = str(caught.value)
    assert "exited with 1" in message and "address already in use" in message
    assert "answered by another process" in message and repr(instance) in message


def test_a_ready_file_of_an_earlier_start_is_not_ours(sleeper: subprocess.Popen[bytes], tmp_path: Path) -> None:
    ready = tmp_path / "writer.ready"
    ready.write_text("tok-of-an-older-start")
    with pytest.raises(RuntimeError, match="did not report ready"):
        wait_ready_file(ready, "tok-1", 1, sleeper, tmp_path / "writer.log")
    ready.write_text("tok-1")
    wait_ready_file(ready, "tok-1", 1, sleeper, tmp_path / "writer.log")


def test_a_worker_that_dies_before_it_is_ready_is_reported(tmp_path: Path) -> None:
    proc = spawn("import sys; sys.exit(3)")
    proc.wait()
    log = tmp_path / "imager.log"
    log.write_text("KafkaConnectionError: unable to bootstrap\n")
    with pytest.raises(RuntimeError, match=r"(?s)exited with 3.*unable to bootstrap"):
        wait_ready_file(tmp_path / "imager.ready", "tok-1", 5, proc, log)
