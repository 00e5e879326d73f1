"""`make up` then a CLI call works with nothing exported, also when the default port (8700) is taken by
something else: the CLI finds the stack through the state file `up` writes, not by trying the default port.

Runs what `make up` runs (`python -m devstack up`) with its own state dir and servers, so it never touches a
developer's `.stack/dev`, and the CLI as a separate process from that directory, as a person would.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contentline_cli.config import DEFAULT_API_URL
from contentline_cli.session import EXIT_UNREACHABLE

pytestmark = pytest.mark.e2e
DEFAULT_PORT = int(DEFAULT_API_URL.rsplit(":", 1)[1])


class _NotContentline(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>some other dev server</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def default_port_taken() -> Iterator[None]:
    """A dummy HTTP server on the default port (unless something already listens there: taken either way)."""
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", DEFAULT_PORT), _NotContentline)
    except OSError:
        with socket.create_connection(("127.0.0.1", DEFAULT_PORT), timeout=2):
            pass  # someone else's listener: the port is taken, which is what this test needs
        yield
        return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def shell_env(tmp_path: Path) -> dict[str, str]:
    """This shell without any CONTENTLINE_ setting (nothing exported), nor this machine's CLI config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTLINE_")}
    env["CONTENTLINE_CONFIG"] = str(tmp_path / "no-config.toml")
    if os.environ.get("CONTENTLINE_CACHE_DIR"):  # where the Kafka jars are cached is the launcher's, keep it
        env["CONTENTLINE_CACHE_DIR"] = os.environ["CONTENTLINE_CACHE_DIR"]
    return env


def contentline(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "contentline_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_make_up_then_the_cli_works_without_exports_when_the_default_port_is_taken(tmp_path: Path) -> None:
    env, state = shell_env(tmp_path), tmp_path / ".stack" / "dev"
    work = tmp_path / "project" / "notes"  # `make up` ran in tmp_path; the CLI finds it from a subdirectory too
    work.mkdir(parents=True)
    with default_port_taken():
        # Without a stack the CLI does not quietly use what answers on the default port.
        alone = env | {"CONTENTLINE_STACK_STATE": str(tmp_path / "none.json")}  # not a stack of this checkout
        before = contentline(work, alone, "whoami")
        assert before.returncode == EXIT_UNREACHABLE, before.stderr
        assert "not as the contentline API" in before.stderr and "[URL from the default URL" in before.stderr

        up = subprocess.Popen([sys.executable, "-m", "devstack", "up", "--state-dir", str(state)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 420
            while not (state / "stack.json").exists() and up.poll() is None and time.monotonic() < deadline:
                time.sleep(1)
            if up.poll() is not None:  # the local launcher returns once everything is up
                out, err = up.communicate(timeout=60)
                assert up.returncode == 0, f"{out}\n{err}"
                assert f"Port {DEFAULT_PORT} is taken" in err, err
            assert (state / "stack.json").exists(), "the stack did not come up in time"

            who = contentline(work, env, "whoami")
            assert who.returncode == 0, who.stderr
            assert who.stdout.startswith("account ")
            site = contentline(work, env, "site", "create", "found the stack")
            assert site.returncode == 0 and site.stdout.strip(), site.stderr
            topics = contentline(work, env, "topics", "--json")  # an operator command: the stack's operator key
            assert topics.returncode == 0 and "contentline.keywords.ingest" in topics.stdout, topics.stderr
        finally:
            down = subprocess.run([sys.executable, "-m", "devstack", "down", "--state-dir", str(state)], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
            if up.poll() is None:  # testcontainers keep `up` in the foreground: Ctrl-C is how it stops
                up.terminate()
                up.wait(60)
            assert down.returncode == 0, down.stdout + down.stderr

        # The stack is down: its state file is gone and the CLI says what answers instead.
        after = contentline(work, alone, "whoami")
        assert after.returncode == EXIT_UNREACHABLE, after.stderr
