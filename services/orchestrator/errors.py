"""Domain errors of the orchestrator. Each maps to one HTTP status and an RFC 9457 problem body
(services.orchestrator.web.problems); the Kafka handlers turn NotFoundError into a dead letter."""

from __future__ import annotations

from typing import Any, ClassVar


class ProblemError(Exception):
    """A request that cannot be honoured; `status` maps to the HTTP status, `detail` says what and why.

    `extra` becomes extension members of the problem body (e.g. the numbers of a credit refusal).
    """

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(ProblemError):
    """Unknown id, or an id of another account: the two are indistinguishable on purpose."""

    status = 404
    slug = "not-found"


class ConflictError(ProblemError):
    status = 409
    slug = "conflict"


class InsufficientCreditsError(ProblemError):
    status = 402
    slug = "insufficient-credits"
