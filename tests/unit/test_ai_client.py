"""The AI client's configuration rules, without any network."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.ai import AiClient
from shared.settings import Settings


def test_missing_provider_fails_with_the_fix_in_the_message() -> None:
    client = AiClient(Settings(openai_api_key=SecretStr(""), openai_base_url=None))
    with pytest.raises(RuntimeError, match="set OPENAI_API_KEY"):
        client.check_configured()


def test_a_local_compatible_server_needs_no_key_and_the_key_never_shows() -> None:
    AiClient(Settings(openai_api_key=SecretStr(""), openai_base_url="http://127.0.0.1:9/v1")).check_configured()
    settings = Settings(openai_api_key=SecretStr("sk-secret-value"))
    assert "sk-secret-value" not in repr(settings) and "sk-secret-value" not in str(settings.model_dump())
