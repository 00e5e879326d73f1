"""Where the CLI finds the API and its keys, first match wins (keys are never printed):

1. `--api URL` on the command line (the URL only);
2. environment: CONTENTLINE_API_URL, CONTENTLINE_API_KEY (or CONTENTLINE_API_KEY_FILE, a file holding it);
3. a config file: $CONTENTLINE_CONFIG or ~/.config/contentline/config.toml, e.g.
       api_url = "http://127.0.0.1:8700"
       api_key_file = "~/.config/contentline/account.key"    # or api_key = "cl_..."
       operator_key_file = "/srv/contentline/operator.key"    # for operator commands (topics, dlq, ...)
4. the stack `make up` started: its state file `.stack/dev/stack.json`, looked for in the current directory
   and its parents, then in the checkout the CLI is installed from ($CONTENTLINE_STACK_STATE names one
   directly). It records the API's URL (also when `up` had to pick another port) and the key files. A state
   file whose orchestrator no longer runs is stale and ignored (and said so when the API cannot be reached).
5. http://127.0.0.1:8700 (the default port), saying so when nothing answers there.

Operator commands use the operator key: CONTENTLINE_OPERATOR_KEY[_FILE] (the orchestrator's own variables),
`operator_key[_file]` in the config file, or the stack's; without one they send the account key.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_API_URL = "http://127.0.0.1:8700"
CONFIG_PATH = Path("~/.config/contentline/config.toml")
STACK_STATE = Path(".stack/dev/stack.json")
CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Connection:
    api_url: str
    api_key: str | None = field(repr=False)
    key_source: str  # where the key came from, for messages (never the key)
    url_source: str = "default"
    operator_key: str | None = field(default=None, repr=False, compare=False)
    operator_key_source: str = field(default="none", compare=False)
    note: str = field(default="", compare=False)  # e.g. a stale stack file that was ignored


def _read_key(path: str | Path) -> str:
    return Path(path).expanduser().read_text(encoding="utf-8").strip()


def _config_file() -> tuple[dict[str, Any], Path]:
    path = Path(os.environ.get("CONTENTLINE_CONFIG", CONFIG_PATH)).expanduser()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}, path
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return data, path


def stack_state_files(start: Path | None = None) -> list[Path]:
    """Candidate state files, nearest first: $CONTENTLINE_STACK_STATE, then cwd and its parents, then the checkout."""
    if os.environ.get("CONTENTLINE_STACK_STATE"):
        named = Path(os.environ["CONTENTLINE_STACK_STATE"]).expanduser()
        return [named] if named.is_file() else []
    here = (start or Path.cwd()).resolve()
    found = [d / STACK_STATE for d in (here, *here.parents) if (d / STACK_STATE).is_file()]
    if (CHECKOUT / STACK_STATE).is_file() and CHECKOUT / STACK_STATE not in found:
        found.append(CHECKOUT / STACK_STATE)
    return found


def _runs(pid: object, module: str) -> bool:
    """Is `pid` still `python -m <module>`? (Without /proc, e.g. macOS, a recorded pid is taken on trust.)"""
    if not isinstance(pid, int):
        return False
    if not Path("/proc").is_dir():
        return True
    try:
        return f"-m\0{module}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def live_stack(start: Path | None = None) -> tuple[dict[str, Any], Path | None, str]:
    """(the state of the nearest stack whose orchestrator runs, its file, a note about stale files skipped)."""
    stale = []
    for path in stack_state_files(start):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            stale.append(f"{path} (unreadable)")
            continue
        if not isinstance(data, dict):
            continue
        pid = (data.get("pids") or {}).get("orchestrator")
        if _runs(pid, "services.orchestrator"):
            return data, path, ""
        stale.append(f"{path} (its orchestrator, pid {pid}, is not running)")
    note = f"ignored a stale stack state file {'; '.join(stale)}: `make up` starts a new stack" if stale else ""
    return {}, None, note


def resolve(api_url: str | None = None, start: Path | None = None) -> Connection:
    """The API URL (`api_url` from --api wins), the account key and the operator key, from the sources above."""
    env = os.environ
    config, config_path = _config_file()
    stack, stack_path, note = live_stack(start)
    url, url_source = DEFAULT_API_URL, "the default URL; no CONTENTLINE_API_URL, config file or running `make up`"
    for value, source in (
        (stack.get("api_url"), f"the stack in {stack_path}"),
        (config.get("api_url"), f"api_url in {config_path}"),
        (env.get("CONTENTLINE_API_URL"), "CONTENTLINE_API_URL"),
        (api_url, "--api"),
    ):
        if value:
            url, url_source = str(value), source
    # The stack's keys only go with the stack's URL: a key of one deployment is no use at another.
    stack_keys = (stack.get("keys") or {}) if url_source.startswith("the stack") else {}

    key, key_source = _first_key(
        (env.get("CONTENTLINE_API_KEY"), None, "CONTENTLINE_API_KEY"),
        (None, env.get("CONTENTLINE_API_KEY_FILE"), "CONTENTLINE_API_KEY_FILE"),
        (config.get("api_key"), None, f"api_key in {config_path}"),
        (None, config.get("api_key_file"), f"api_key_file in {config_path}"),
        (None, stack_keys.get("account_key_file"), None),
    )
    operator, operator_source = _first_key(
        (env.get("CONTENTLINE_OPERATOR_KEY"), None, "CONTENTLINE_OPERATOR_KEY"),
        (None, env.get("CONTENTLINE_OPERATOR_KEY_FILE"), "CONTENTLINE_OPERATOR_KEY_FILE"),
        (config.get("operator_key"), None, f"operator_key in {config_path}"),
        (None, config.get("operator_key_file"), f"operator_key_file in {config_path}"),
        (None, stack_keys.get("operator_key_file"), None),
    )
    return Connection(url, key, key_source, url_source, operator, operator_source, note)


def _first_key(*candidates: tuple[Any, Any, str | None]) -> tuple[str | None, str]:
    """The first (value, key file, where it is configured) that gives a key. A key file someone configured
    must exist; a stack's (source None) may be gone with its stack and is skipped."""
    for value, path, source in candidates:
        if value:
            return str(value).strip(), str(source)
        if path:
            file = Path(str(path)).expanduser()
            if file.is_file():
                return _read_key(file), str(file) if source is None else f"{file} ({source})"
            if source is not None:
                raise ValueError(f"the key file {file} ({source}) does not exist")
    return None, "none"
