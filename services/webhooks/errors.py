"""Errors of the webhooks service interface. `status` is the HTTP status a router answers with, `detail` the
text of the problem body (what and why). An endpoint of another account is simply not found."""

from __future__ import annotations

from typing import ClassVar


class WebhookError(Exception):
    status: ClassVar[int] = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(WebhookError):
    status = 404


class ConflictError(WebhookError):
    status = 409


class SecretsUnavailableError(WebhookError):
    """CONTENTLINE_SECRET_KEY is missing or wrong: secrets can be neither stored nor read."""

    status = 503
