"""What every CLI command shares: the consoles, exit codes, and a client built from the configured API
and key whose errors become a readable message and exit code 1."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import typer
from rich.console import Console

from contentline_cli import config
from contentline_cli.client import ApiError, ContentlineClient

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT, EXIT_PAUSED, EXIT_NO_OUTPUT = 0, 1, 2, 3, 4
MAX_REJECTED_SHOWN = 10

console = Console(highlight=False)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 120  # logs and pipes: room for the summary table instead of the 80-column default
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def client_for(ctx: typer.Context) -> Iterator[ContentlineClient]:
    """A client for the command; API and file errors become a readable message and exit code 1."""
    try:
        conn = config.resolve(ctx.find_root().obj)
        with ContentlineClient(conn.api_url, api_key=conn.api_key) as client:
            yield client
    except ApiError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        for error in (exc.extra.get("errors") or [])[:MAX_REJECTED_SHOWN]:
            if isinstance(error, dict):
                err_console.print(f"  {error.get('field', '?')}: {error.get('reason', '')}")
        rejected = exc.extra.get("rejected")
        if isinstance(rejected, list):
            for row in rejected[:MAX_REJECTED_SHOWN]:
                if isinstance(row, dict):
                    err_console.print(f"  line {row.get('line', '?')}: {row.get('reason', '')}")
        if exc.status == 401:
            err_console.print("  (set CONTENTLINE_API_KEY or CONTENTLINE_API_KEY_FILE, or api_key_file in "
                              f"{config.CONFIG_PATH}; an operator creates accounts and their first key)")
        raise typer.Exit(EXIT_FAILED) from None
    except (OSError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_FAILED) from None


