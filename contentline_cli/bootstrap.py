"""First keys of a fresh deployment: the operator key and a first account with its key, as files.

    python -m contentline_cli.bootstrap operator-key DIR [--owner UID]
        DIR/operator.key: created once (random, mode 0600); the orchestrator reads it through
        CONTENTLINE_OPERATOR_KEY_FILE. An existing file is kept.
    python -m contentline_cli.bootstrap first-account DIR --api URL [--name demo] [--credits 100000]
        With DIR/operator.key, creates an account and writes its first key to DIR/account.key (mode 0600),
        unless that file exists already.

docker-compose.yml runs both; `python -m devstack demo|up` use the same functions. Only where the keys
are is ever printed, never a key.
"""

from __future__ import annotations

import os
import secrets
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from contentline_cli.client import ApiError, ContentlineClient

OPERATOR_FILE = "operator.key"
ACCOUNT_FILE = "account.key"

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n")[0])


def write_secret(path: Path, value: str, owner: int | None = None) -> None:
    """Create `path` readable by its owner only; never overwrite (O_EXCL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    if owner is not None:
        os.chown(path, owner, owner)


def ensure_operator_key(directory: Path, owner: int | None = None) -> Path:
    path = directory / OPERATOR_FILE
    if not path.exists():
        write_secret(path, f"clop_{secrets.token_urlsafe(32)}", owner)
    if owner is not None:  # the directory belongs to the service user, who writes the account key next
        os.chown(directory, owner, owner)
        directory.chmod(0o700)
    return path


def create_first_account(
    api_url: str, directory: Path, name: str = "demo", credits: Decimal = Decimal(100_000), wait: float = 120
) -> tuple[str | None, Path]:
    """(the new account's id, or None when the key file was there already; the key file)."""
    path = directory / ACCOUNT_FILE
    if path.exists():
        return None, path
    operator_key = (directory / OPERATOR_FILE).read_text(encoding="utf-8").strip()
    deadline = time.monotonic() + wait
    with ContentlineClient(api_url, api_key=operator_key) as client:
        while True:  # the API may still be starting
            try:
                made = client.create_account(name, credits)
                break
            except ApiError as exc:
                if exc.status != 0 or time.monotonic() > deadline:
                    raise
                time.sleep(1)
    write_secret(path, made.api_key.key)
    return made.account.account_id, path


@app.command("operator-key")
def operator_key(
    directory: Path,
    owner: Annotated[int | None, typer.Option(help="uid (and gid) that owns the files, when run as root")] = None,
) -> None:
    path = ensure_operator_key(directory, owner)
    print(f"operator key: {path} (give its path to the orchestrator as CONTENTLINE_OPERATOR_KEY_FILE)")


@app.command("first-account")
def first_account(
    directory: Path,
    api: Annotated[str, typer.Option(help="Orchestrator base URL")] = "http://127.0.0.1:8700",
    name: Annotated[str, typer.Option(help="Account name")] = "demo",
    credits: Annotated[Decimal, typer.Option(help="Initial credits")] = Decimal(100_000),
) -> None:
    account_id, path = create_first_account(api, directory, name, credits)
    if account_id is None:
        print(f"account key: {path} (exists; nothing created)")
    else:
        print(f"account {account_id}: its API key is in {path} (use it as CONTENTLINE_API_KEY_FILE)")


if __name__ == "__main__":
    app(prog_name="python -m contentline_cli.bootstrap")
