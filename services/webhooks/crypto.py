"""Endpoint secrets at rest: Fernet under CONTENTLINE_SECRET_KEY (comma-separated keys, newest first).

The first key encrypts, every key decrypts (MultiFernet), so the master key is rotated without downtime.
Same format and semantics as `shared/secrets.py` of branch `wordpress`; once that lands this module should
become a thin re-export of it (kept separate only to avoid a clash between the two branches).
Nothing here puts a secret or a key into an error message.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


class SecretKeyError(Exception):
    """The master key is missing or malformed, or a stored secret cannot be decrypted with it."""


def _box(secret_key: SecretStr) -> MultiFernet:
    raw = [k.strip() for k in secret_key.get_secret_value().split(",") if k.strip()]
    if not raw:
        raise SecretKeyError("CONTENTLINE_SECRET_KEY is not set: webhook signing secrets are stored encrypted with it")
    try:
        return MultiFernet([Fernet(k) for k in raw])
    except ValueError as exc:
        raise SecretKeyError(
            "CONTENTLINE_SECRET_KEY holds a malformed key (each must be 32 url-safe base64-encoded bytes)"
        ) from exc


def check_key(secret_key: SecretStr) -> None:
    _box(secret_key)


def encrypt(plaintext: str, secret_key: SecretStr) -> str:
    return _box(secret_key).encrypt(plaintext.encode()).decode()


def decrypt(token: str, secret_key: SecretStr) -> str:
    try:
        return _box(secret_key).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyError(
            "a stored webhook secret cannot be decrypted with CONTENTLINE_SECRET_KEY (encrypted with a dropped key?)"
        ) from exc
