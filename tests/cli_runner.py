"""Run the `contentline` CLI in-process (typer's CliRunner) against the test stack, with nothing from this
machine's own configuration (no config file, no `make up` stack, no CONTENTLINE_* of the shell)."""

from __future__ import annotations

import json
import os
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from contentline_cli.app import app
from devstack.stack import Stack


def cli(stack: Stack, *args: str, key: str | None = None, operator_key: str | None = None, **env: str) -> Result:
    """`contentline ARGS` with the account `key` (and the `operator_key` for operator commands)."""
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("CONTENTLINE_")}
    clean |= {
        "CONTENTLINE_API_URL": stack.api_url,
        "CONTENTLINE_API_KEY": key,
        "CONTENTLINE_OPERATOR_KEY": operator_key,
        "CONTENTLINE_CONFIG": "/nonexistent/contentline.toml",
        "CONTENTLINE_STACK_STATE": "/nonexistent/stack.json",
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=clean | env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def json_of(result: Result) -> Any:
    return json.loads(ok(result))
