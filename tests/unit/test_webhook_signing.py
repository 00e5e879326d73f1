"""Signatures verify with the receiver's library (standardwebhooks), secrets round-trip encrypted, inputs are
validated with the field named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.webhooks import crypto
from services.webhooks.schemas import EndpointCreate, EndpointUpdate
from services.webhooks.signing import new_secret, signature_headers

BODY = json.dumps({"type": "run.completed", "data": {"run_id": "r1"}})


def test_signature_verifies_with_the_secret_and_only_with_it() -> None:
    secret, other = new_secret(), new_secret()
    assert secret.startswith("whsec_") and secret != other
    headers = signature_headers("evt_1", BODY, [secret], datetime.now(UTC))
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("r1", "r2"), headers)  # a tampered body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "evt_2"})  # the id is signed too


def test_two_secrets_during_a_rotation_both_verify() -> None:
    new, old = new_secret(), new_secret()
    headers = signature_headers("evt_1", BODY, [new, old], datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(BODY, headers)


def test_a_stale_timestamp_is_rejected_by_receivers() -> None:
    secret = new_secret()
    headers = signature_headers("evt_1", BODY, [secret], datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers)


def test_secret_encryption_round_trip_and_key_rotation() -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = crypto.encrypt("whsec_abc", SecretStr(old_key))
    assert "whsec_abc" not in token
    assert crypto.decrypt(token, SecretStr(f"{new_key},{old_key}")) == "whsec_abc"  # old rows still readable
    with pytest.raises(crypto.SecretKeyError, match="cannot be decrypted") as err:
        crypto.decrypt(token, SecretStr(new_key))
    assert old_key not in str(err.value) and new_key not in str(err.value)
    with pytest.raises(crypto.SecretKeyError, match="not set"):
        crypto.encrypt("x", SecretStr(""))
    with pytest.raises(crypto.SecretKeyError, match="malformed"):
        crypto.encrypt("x", SecretStr("not-a-key"))


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"url": "ftp://example.com/x", "event_types": ["run.completed"]}, "url", "scheme"),
        ({"url": "not a url", "event_types": ["run.completed"]}, "url", "URL"),
        ({"url": "https://example.com/x", "event_types": ["run.finished"]}, "event_types.0", "run.completed"),
        ({"url": "https://example.com/x", "event_types": ["webhook.test"]}, "event_types", "cannot be subscribed"),
        ({"url": "https://example.com/x", "event_types": []}, "event_types", "at least 1"),
        ({"url": "https://example.com/x", "event_types": ["run.failed"], "colour": "red"}, "colour", "Extra"),
    ],
)
def test_endpoint_input_errors_name_the_field(body: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        EndpointCreate.model_validate(body)
    [error] = err.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field and reason in error["msg"]


def test_event_types_are_a_set_and_an_update_must_change_something() -> None:
    spec = EndpointCreate.model_validate(
        {"url": "https://example.com/hook", "event_types": ["run.failed", "run.completed", "run.failed"]}
    )
    assert [t.value for t in spec.event_types] == ["run.completed", "run.failed"]
    with pytest.raises(ValidationError, match="nothing to change"):
        EndpointUpdate.model_validate({})
    assert EndpointUpdate.model_validate({"is_active": False}).is_active is False
