"""API key material: `cl_<id>_<secret>`, 12 hex characters of public id and 256 random bits of secret.

Only the SHA-256 of the whole key is stored. A fast hash is right here: a slow KDF (bcrypt, argon2)
protects low-entropy passwords from guessing, but guessing a 256-bit random secret is hopeless at any
speed, and a fast hash keeps authentication off the CPU budget of every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_KEY = re.compile(r"^cl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, whole key). The whole key is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"cl_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The id part of a well-formed key, or None (then it is not worth a database lookup)."""
    match = _KEY.match(token)
    return match.group(1) if match else None


def same_hash(stored: str, computed: str) -> bool:
    return hmac.compare_digest(stored.encode(), computed.encode())
