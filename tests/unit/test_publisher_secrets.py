"""Stored credentials: Fernet with rotation through several keys, or references to env vars and files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from shared import secrets
from shared.secrets import SecretError


def test_round_trip_and_the_token_is_not_the_secret() -> None:
    key = SecretStr(secrets.new_key())
    token = secrets.encrypt("abcd efgh ijkl", key)
    assert "abcd" not in token
    assert secrets.decrypt(token, key) == "abcd efgh ijkl"


def test_rotation_new_key_first_old_tokens_still_readable_then_rewritten() -> None:
    old, new = secrets.new_key(), secrets.new_key()
    token = secrets.encrypt("pw", SecretStr(old))
    both = SecretStr(f"{new}, {old}")
    assert secrets.decrypt(token, both) == "pw"
    rotated = secrets.rotate(token, both)
    assert secrets.decrypt(rotated, SecretStr(new)) == "pw"  # the old key can now be dropped
    with pytest.raises(SecretError, match="cannot be decrypted"):
        secrets.decrypt(token, SecretStr(new))


def test_missing_or_malformed_key_says_so_without_the_key() -> None:
    with pytest.raises(SecretError, match="not set"):
        secrets.encrypt("pw", SecretStr(""))
    with pytest.raises(SecretError, match="malformed") as caught:
        secrets.encrypt("pw", SecretStr("not-a-fernet-key"))
    assert "not-a-fernet-key" not in str(caught.value)


def test_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WP_PASSWORD_TEST", "from-env")
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    assert secrets.reveal(None, "env:WP_PASSWORD_TEST", SecretStr("")) == "from-env"
    assert secrets.reveal(None, f"file:{secret_file}", SecretStr("")) == "from-file"
    monkeypatch.delenv("WP_PASSWORD_TEST")
    with pytest.raises(SecretError, match="WP_PASSWORD_TEST"):
        secrets.reveal(None, "env:WP_PASSWORD_TEST", SecretStr(""))
    with pytest.raises(SecretError, match="cannot read"):
        secrets.reveal(None, f"file:{tmp_path / 'missing'}", SecretStr(""))


@pytest.mark.parametrize("ref", ["vault:x", "env:", "env:1BAD", "file:relative/path", "plain"])
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(SecretError, match="neither env:NAME nor file:/absolute/path"):
        secrets.check_reference(ref)
