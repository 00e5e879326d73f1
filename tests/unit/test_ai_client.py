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


def test_a_whole_failed_batch_still_fits_one_kafka_record() -> None:
    from shared.contracts import ItemFailure, ResultStatus, Stage, StageResult
    from shared.worker import short

    failures = [short(ItemFailure(item_id=i, reason="<html>" + "x" * 5000)) for i in range(1000)]
    result = StageResult(
        command_id="c" * 32,
        account_id="a",
        site_id="s",
        run_id="r",
        stage=Stage.DRAFTS,
        batch_seq=0,
        status=ResultStatus.FAILED,
        items_in=1000,
        items_processed=0,
        items_created=0,
        failures=failures,
    )
    assert len(result.model_dump_json()) < 1_000_000 and failures[0].reason.endswith("...")
