"""Endpoint secrets at rest: the project's one Fernet scheme (shared.secrets, CONTENTLINE_SECRET_KEY).

The signing secret must be readable to sign, so it is encrypted, not hashed. This module only gives the
webhooks service its own error type; the keys, their rotation and the format live in shared.secrets.
"""

from __future__ import annotations

from pydantic import SecretStr

from shared import secrets


class SecretKeyError(Exception):
    """The master key is missing or malformed, or a stored secret cannot be decrypted with it."""


def check_key(secret_key: SecretStr) -> None:
    encrypt("check", secret_key)


def encrypt(plaintext: str, secret_key: SecretStr) -> str:
    try:
        return secrets.encrypt(plaintext, secret_key)
    except secrets.SecretError as exc:
        raise SecretKeyError(str(exc)) from exc


def decrypt(token: str, secret_key: SecretStr) -> str:
    try:
        return secrets.decrypt(token, secret_key)
    except secrets.SecretError as exc:
        raise SecretKeyError(str(exc)) from exc
