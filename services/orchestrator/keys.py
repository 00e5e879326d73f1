"""The operator key from the environment: `CONTENTLINE_OPERATOR_KEY`, or a file named by
`CONTENTLINE_OPERATOR_KEY_FILE` (a Docker/Kubernetes secret). Kept as SecretStr, never logged."""

from __future__ import annotations

from pydantic import SecretStr

from shared.settings import Settings

MIN_LENGTH = 24


def operator_key(settings: Settings) -> SecretStr | None:
    """The configured operator key; ValueError when it is set twice, unreadable, or too short to be safe."""
    if settings.operator_key is not None and settings.operator_key_file is not None:
        raise ValueError("set CONTENTLINE_OPERATOR_KEY or CONTENTLINE_OPERATOR_KEY_FILE, not both")
    if settings.operator_key_file is not None:
        try:
            text = settings.operator_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read the operator key file {settings.operator_key_file}: {exc.strerror}") from exc
        key: SecretStr | None = SecretStr(text)
    else:
        key = settings.operator_key
    if key is not None and len(key.get_secret_value()) < MIN_LENGTH:
        raise ValueError(f"the operator key must be at least {MIN_LENGTH} characters (use a random one)")
    return key
