"""What every CLI command shares: the consoles, the exit codes, a client for the configured API (errors become
one readable line and an exit code that tells their kind), and the table / `--json` output helpers.

Exit codes (README: CLI reference):
    0  ok (a followed run completed)         6  the API refused the input (400, 413, 422)
    1  failed: a run failed or was cancelled, 7  the key is missing, wrong, or not allowed here (401, 403)
       a server error, anything unexpected   8  no contentline API answers at the URL (or the broker: 503)
    2  usage: bad command line or local file 9  a followed run is paused
    3  not found (404)                       10 following timed out (the run goes on)
    4  conflict (409): already decided, an active run, nothing pending
    5  payment required (402): not enough credits
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contentline_cli import config
from contentline_cli.client import ApiError, ContentlineClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_PAYMENT = 0, 1, 2, 3, 4, 5
EXIT_INVALID, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_PAUSED, EXIT_TIMEOUT = 6, 7, 8, 9, 10
EXIT_NO_OUTPUT = 11  # a run that completed with nothing out (every item failed; stopped_reason no_output)
EXIT_BY_STATUS = {400: EXIT_INVALID, 401: EXIT_AUTH, 402: EXIT_PAYMENT, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND,
                  409: EXIT_CONFLICT, 413: EXIT_INVALID, 422: EXIT_INVALID, 502: EXIT_UNREACHABLE,
                  503: EXIT_UNREACHABLE, 504: EXIT_UNREACHABLE, 0: EXIT_UNREACHABLE}  # fmt: skip
MAX_REJECTED_SHOWN = 10

console = Console(highlight=False)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 120  # logs and pipes: room for the summary table instead of the 80-column default
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer (for scripts).")]


def exit_code(exc: ApiError) -> int:
    if exc.foreign:
        return EXIT_UNREACHABLE
    return EXIT_BY_STATUS.get(exc.status, EXIT_FAILED)


def error_lines(exc: ApiError, conn: config.Connection | None = None, operator: bool = False) -> list[str]:
    """What went wrong, in one line; a validation problem adds one line per field (never a raw list)."""
    fields = exc.field_errors
    status = f" (HTTP {exc.status})" if exc.status else ""
    if len(fields) == 1:
        where, reason = fields[0]
        lines = [f"{where}: {reason}{status}" if where else f"{reason}{status}"]
    elif fields:
        lines = [f"{len(fields)} fields are not valid{status}:", *(f"  {w}: {r}" for w, r in fields[:100])]
    else:
        lines = [f"{exc.detail}{status}"]
    rejected = exc.extra.get("rejected")
    if isinstance(rejected, list):
        lines += [f"  line {r.get('line', '?')}: {r.get('reason', '')}" for r in rejected[:MAX_REJECTED_SHOWN]
                  if isinstance(r, dict)]  # fmt: skip
    if conn is None:
        return lines
    if exc.status == 0 or exc.foreign:
        lines[0] += f" [URL from {conn.url_source}]"
        if conn.note:
            lines[0] += f"; {conn.note}"
    elif exc.status in (401, 403):
        source = conn.operator_key_source if operator and conn.operator_key else conn.key_source
        hint = "no key configured" if source == "none" else f"key from {source}"
        wanted = " this needs the operator key (CONTENTLINE_OPERATOR_KEY_FILE)" if operator else ""
        lines[0] += f" [{hint}]{';' if wanted else ''}{wanted}"
    return lines


def fail(lines: Sequence[str], code: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(lines[0])}")
    for line in lines[1:]:
        err_console.print(line, markup=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def client_for(ctx: typer.Context, operator: bool = False) -> Iterator[ContentlineClient]:
    """A client for the command (`operator`: with the operator key when one is configured). An API error ends
    the command with its one-line message and the exit code of its kind; a local problem (a file, the config)
    with exit code 2."""
    conn: config.Connection | None = None
    try:
        conn = config.resolve(ctx.find_root().obj)
        key = conn.operator_key if operator and conn.operator_key else conn.api_key
        with ContentlineClient(conn.api_url, api_key=key) as client:
            yield client
    except ApiError as exc:
        fail(error_lines(exc, conn, operator), exit_code(exc))
    except (OSError, ValueError) as exc:
        fail([str(exc)], EXIT_USAGE)


# ---------------------------------------------------------------------- output
def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def cell(value: Any) -> str:
    """A table cell: times without seconds' fractions, credits with two decimals, lists joined, none as '-'."""
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return value[:16].replace("T", " ")  # an ISO time from the API
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str | tuple[str, str]], title: str | None = None,
          empty: str = "nothing to show") -> None:  # fmt: skip
    """Rows (API objects) as a table; a column is a key or (key, heading)."""
    if not rows:
        console.print(f"[dim]{empty}[/]")
        return
    out = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
    names = [(c, c) if isinstance(c, str) else c for c in columns]
    for n, (_, heading) in enumerate(names):
        # The first column is the handle people copy (an id, a record): never wrapped.
        out.add_column(heading, overflow="fold", no_wrap=n == 0)
    for row in rows:
        out.add_row(*(cell(row.get(key)) for key, _ in names))
    console.print(out)


def fields(data: dict[str, Any], keys: Sequence[str] | None = None, title: str | None = None) -> None:
    """One object as `name  value` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    if title:
        console.print(f"[bold]{title}[/]")
    for key in keys or list(data):
        grid.add_row(key, cell(data.get(key)))
    console.print(grid)
