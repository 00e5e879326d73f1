"""Standard Webhooks signatures (https://www.standardwebhooks.com), computed by the `standardwebhooks` library.

Headers: `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (this attempt, Unix
seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several separated by
spaces while a rotated-out secret is still valid: a receiver accepts any one it can verify).
"""

from __future__ import annotations

import base64
import math
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24..64 random bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_headers(event_id: str, body: str, signing_secrets: Sequence[str], at: datetime) -> dict[str, str]:
    if not signing_secrets:
        raise ValueError("at least one secret is needed to sign")
    signatures = " ".join(Webhook(s).sign(event_id, at, body) for s in signing_secrets)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": signatures,
    }
