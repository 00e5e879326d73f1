"""Where the CLI takes its API URL and key from, in order; the key is sent as a bearer token."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from contentline_cli import config
from contentline_cli.bootstrap import ensure_operator_key, write_secret
from contentline_cli.client import ContentlineClient


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("CONTENTLINE_API_URL", "CONTENTLINE_API_KEY", "CONTENTLINE_API_KEY_FILE", "CONTENTLINE_OPERATOR_KEY",
                "CONTENTLINE_OPERATOR_KEY_FILE", "CONTENTLINE_STACK_STATE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONTENTLINE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setattr(config, "CHECKOUT", tmp_path / "checkout")  # not this checkout's own .stack
    monkeypatch.chdir(tmp_path)  # no .stack/dev/stack.json here
    return tmp_path


def write_stack(root: Path, url: str, orchestrator_pid: int) -> Path:
    state = root / ".stack" / "dev"
    state.mkdir(parents=True)
    (root / "stack.key").write_text("cl_from_stack\n")
    (root / "operator.key").write_text("clop_from_stack\n")
    (state / "stack.json").write_text(json.dumps({"api_url": url, "pids": {"orchestrator": orchestrator_pid}, "keys": {
        "account_key_file": str(root / "stack.key"), "operator_key_file": str(root / "operator.key")}}))
    return state / "stack.json"


@pytest.fixture
def alive(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The pids that count as a running orchestrator."""
    pids: set[int] = set()
    monkeypatch.setattr(config, "_runs", lambda pid, module: pid in pids and module == "services.orchestrator")
    return pids


def test_nothing_configured(clean: Path) -> None:
    conn = config.resolve()
    assert (conn.api_url, conn.api_key, conn.key_source) == (config.DEFAULT_API_URL, None, "none")
    assert conn.url_source.startswith("the default URL") and conn.operator_key is None


def test_env_beats_config_file_beats_stack_state(clean: Path, alive: set[int], monkeypatch: pytest.MonkeyPatch) -> None:
    alive.add(4242)
    state = write_stack(clean, "http://stack:1", 4242)
    conn = config.resolve()
    assert (conn.api_url, conn.api_key) == ("http://stack:1", "cl_from_stack")
    assert conn.key_source == str(clean / "stack.key")
    assert conn.url_source == f"the stack in {state}" and conn.operator_key == "clop_from_stack"

    (clean / "file.key").write_text("cl_from_file\n")
    (clean / "config.toml").write_text(f'api_url = "http://conf:2"\napi_key_file = "{clean / "file.key"}"\n')
    conn = config.resolve()
    assert conn.api_key == "cl_from_file" and conn.api_url == "http://conf:2"
    assert conn.operator_key is None  # the stack's keys go with the stack's URL only

    monkeypatch.setenv("CONTENTLINE_API_KEY", "cl_from_env")
    monkeypatch.setenv("CONTENTLINE_API_URL", "http://env:3")
    assert config.resolve() == config.Connection("http://env:3", "cl_from_env", "CONTENTLINE_API_KEY",
                                                 "CONTENTLINE_API_URL")  # fmt: skip
    assert config.resolve("http://flag:4").api_url == "http://flag:4"


def test_the_stack_is_found_from_a_subdirectory_and_a_stale_one_is_ignored(clean: Path, alive: set[int]) -> None:
    write_stack(clean, "http://127.0.0.1:40123", 4242)
    deep = clean / "a" / "b"
    deep.mkdir(parents=True)
    stale = config.resolve(start=deep)  # pid 4242 runs nothing: the file is stale
    assert stale.api_url == config.DEFAULT_API_URL and stale.api_key is None
    assert "stale" in stale.note and "pid 4242" in stale.note

    alive.add(4242)
    live = config.resolve(start=deep)
    assert live.api_url == "http://127.0.0.1:40123" and live.api_key == "cl_from_stack" and live.note == ""


def test_a_configured_key_file_that_is_missing_is_an_error(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTLINE_API_KEY_FILE", str(clean / "nope.key"))
    with pytest.raises(ValueError, match=r"nope\.key"):
        config.resolve()


def test_client_sends_the_key_as_bearer() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"kind": "account", "account_id": "a", "key_id": "k"})

    with ContentlineClient("http://api.test", transport=httpx.MockTransport(handler), api_key="cl_x") as client:
        assert client.me().account_id == "a"
    assert seen == ["Bearer cl_x"]


def test_secrets_are_private_files_never_overwritten(tmp_path: Path) -> None:
    path = ensure_operator_key(tmp_path / "secrets")
    first = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and first.startswith("clop_") and len(first.strip()) > 40
    assert ensure_operator_key(tmp_path / "secrets").read_text() == first
    with pytest.raises(FileExistsError):
        write_secret(path, "other")
