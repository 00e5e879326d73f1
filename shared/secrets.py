"""Stored credentials: encrypted with CONTENTLINE_SECRET_KEY, or a reference to where the secret lives.

* Encrypted: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`). The setting holds one or more keys,
  comma-separated, newest first: the first encrypts, every one decrypts (MultiFernet), so a key is rotated
  without downtime: put a new key in front, run `python -m shared.secrets rotate`, then drop the old key.
* Reference: `env:NAME` (an environment variable of the process that needs it) or `file:/absolute/path`
  (e.g. a Docker/Kubernetes secret mount). The database then holds no secret at all.

Nothing here logs or returns a secret in an error message.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SecretError(Exception):
    """A secret that cannot be had; the message says why (never what)."""


def new_key() -> str:
    return Fernet.generate_key().decode()


def _keys(secret_key: SecretStr) -> MultiFernet:
    raw = [k.strip() for k in secret_key.get_secret_value().split(",") if k.strip()]
    if not raw:
        raise SecretError("CONTENTLINE_SECRET_KEY is not set: it is needed to encrypt and read stored passwords")
    try:
        return MultiFernet([Fernet(k) for k in raw])
    except ValueError as exc:
        raise SecretError(
            "CONTENTLINE_SECRET_KEY holds a malformed key (each must be 32 url-safe base64-encoded bytes, "
            "as `python -m shared.secrets new-key` prints)"
        ) from exc


def encrypt(plaintext: str, secret_key: SecretStr) -> str:
    return _keys(secret_key).encrypt(plaintext.encode()).decode()


def decrypt(token: str, secret_key: SecretStr) -> str:
    try:
        return _keys(secret_key).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretError(
            "the stored password cannot be decrypted with CONTENTLINE_SECRET_KEY (was it encrypted with a key "
            "that has since been dropped?)"
        ) from exc


def rotate(token: str, secret_key: SecretStr) -> str:
    """The same secret, encrypted with the first (newest) key."""
    try:
        return _keys(secret_key).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretError("a stored password cannot be decrypted with any key of CONTENTLINE_SECRET_KEY") from exc


def check_reference(ref: str) -> str:
    """`ref` if it is a well-formed reference (`env:NAME` or `file:/absolute/path`), else SecretError."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env" and _ENV_NAME.match(rest):
        return ref
    if scheme == "file" and rest.startswith("/"):
        return ref
    raise SecretError(f"secret reference {ref!r} is neither env:NAME nor file:/absolute/path")


def resolve_reference(ref: str) -> str:
    scheme, _, rest = check_reference(ref).partition(":")
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise SecretError(f"environment variable {rest} (secret reference {ref}) is not set")
        return value
    try:
        value = Path(rest).read_text().strip()
    except OSError as exc:
        raise SecretError(f"cannot read the secret file {rest}: {exc.strerror or exc}") from exc
    if not value:
        raise SecretError(f"the secret file {rest} is empty")
    return value


def reveal(encrypted: str | None, reference: str | None, secret_key: SecretStr) -> str:
    """The plaintext of a stored credential (exactly one of `encrypted` and `reference` is set)."""
    if encrypted:
        return decrypt(encrypted, secret_key)
    if reference:
        return resolve_reference(reference)
    raise SecretError("no password is stored")


async def rotate_stored(database_url: str, secret_key: SecretStr) -> int:
    """Re-encrypt every stored WordPress password with the newest key; returns how many rows changed."""
    from sqlalchemy import select

    from shared.db.models import WordPressConnection
    from shared.db.session import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            rows = await session.scalars(
                select(WordPressConnection)
                .where(WordPressConnection.app_password_encrypted.is_not(None))
                .with_for_update()
            )
            changed = 0
            for row in rows:
                assert row.app_password_encrypted is not None
                row.app_password_encrypted = rotate(row.app_password_encrypted, secret_key)
                changed += 1
        return changed
    finally:
        await engine.dispose()


def main() -> None:
    import typer

    cli = typer.Typer(add_completion=False, help="Keys for stored credentials (CONTENTLINE_SECRET_KEY).")

    @cli.command("new-key")
    def new_key_command() -> None:
        """Print a new key (put it FIRST in CONTENTLINE_SECRET_KEY, before the keys in use)."""
        typer.echo(new_key())

    @cli.command("rotate")
    def rotate_command() -> None:
        """Re-encrypt every stored password with the first key of CONTENTLINE_SECRET_KEY."""
        from shared.settings import get_settings

        settings = get_settings()
        try:
            changed = asyncio.run(rotate_stored(settings.database_url, settings.secret_key))
        except SecretError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"re-encrypted {changed} stored passwords with the newest key")

    cli()


if __name__ == "__main__":
    main()
