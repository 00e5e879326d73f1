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
    for var in ("CONTENTLINE_API_URL", "CONTENTLINE_API_KEY", "CONTENTLINE_API_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CONTENTLINE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.chdir(tmp_path)  # no .stack/dev/stack.json here
    return tmp_path


def test_nothing_configured(clean: Path) -> None:
    assert config.resolve() == config.Connection(config.DEFAULT_API_URL, None, "none")


def test_env_beats_config_file_beats_stack_state(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = clean / ".stack" / "dev"
    state.mkdir(parents=True)
    (clean / "stack.key").write_text("cl_from_stack\n")
    (state / "stack.json").write_text(json.dumps({"api_url": "http://stack:1", "keys": {
        "account_key_file": str(clean / "stack.key")}}))
    assert config.resolve() == config.Connection("http://stack:1", "cl_from_stack", str(clean / "stack.key"))

    (clean / "file.key").write_text("cl_from_file\n")
    (clean / "config.toml").write_text(f'api_url = "http://conf:2"\napi_key_file = "{clean / "file.key"}"\n')
    assert config.resolve().api_key == "cl_from_file" and config.resolve().api_url == "http://conf:2"

    monkeypatch.setenv("CONTENTLINE_API_KEY", "cl_from_env")
    monkeypatch.setenv("CONTENTLINE_API_URL", "http://env:3")
    assert config.resolve() == config.Connection("http://env:3", "cl_from_env", "CONTENTLINE_API_KEY")
    assert config.resolve("http://flag:4").api_url == "http://flag:4"


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
