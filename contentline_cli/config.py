"""Where the CLI finds the API and its key, first match wins (the key itself is never printed):

1. environment: CONTENTLINE_API_URL, CONTENTLINE_API_KEY (or CONTENTLINE_API_KEY_FILE, a file holding it);
2. a config file: $CONTENTLINE_CONFIG or ~/.config/contentline/config.toml, e.g.
       api_url = "http://127.0.0.1:8700"
       api_key_file = "~/.config/contentline/account.key"    # or api_key = "cl_..."
3. the state file of a local stack started with `python -m devstack up` (.stack/dev/stack.json), which
   names the demo account's key file.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_API_URL = "http://127.0.0.1:8700"
CONFIG_PATH = Path("~/.config/contentline/config.toml")
STACK_STATE = Path(".stack/dev/stack.json")


@dataclass(frozen=True)
class Connection:
    api_url: str
    api_key: str | None
    key_source: str  # where the key came from, for messages (never the key)


def _read_key(path: str | Path) -> str:
    return Path(path).expanduser().read_text(encoding="utf-8").strip()


def _config_file() -> dict[str, Any]:
    path = Path(os.environ.get("CONTENTLINE_CONFIG", CONFIG_PATH)).expanduser()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return data


def _stack_state(state: Path = STACK_STATE) -> dict[str, Any]:
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve(api_url: str | None = None) -> Connection:
    """The API URL (`api_url` from --api wins) and key, from the sources above."""
    env = os.environ
    config = _config_file()
    stack = _stack_state()
    url = api_url or env.get("CONTENTLINE_API_URL") or config.get("api_url") or stack.get("api_url") or DEFAULT_API_URL
    if env.get("CONTENTLINE_API_KEY"):
        return Connection(url, env["CONTENTLINE_API_KEY"].strip(), "CONTENTLINE_API_KEY")
    if env.get("CONTENTLINE_API_KEY_FILE"):
        return Connection(url, _read_key(env["CONTENTLINE_API_KEY_FILE"]), env["CONTENTLINE_API_KEY_FILE"])
    if config.get("api_key"):
        return Connection(url, str(config["api_key"]).strip(), "config file")
    if config.get("api_key_file"):
        return Connection(url, _read_key(str(config["api_key_file"])), str(config["api_key_file"]))
    key_file = (stack.get("keys") or {}).get("account_key_file")
    if key_file and Path(key_file).is_file():
        return Connection(url, _read_key(key_file), str(key_file))
    return Connection(url, None, "none")
