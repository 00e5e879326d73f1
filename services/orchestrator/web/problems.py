"""One error body for every error the API returns: RFC 9457 problem details.

    {"type": "...", "title": "Not Found", "status": 404, "detail": "site 'x' does not exist",
     "errors": [{"field": "body.keywords.0.volume", "reason": "Input should be greater than or equal to 0"}]}

`errors` is always there (empty unless fields were at fault); domain errors add extension members (a
credit refusal carries `estimate`, `required`, `available`, `shortfall`). FastAPI's own errors (unknown
path 404, 405, validation 422, body too large 413) are reshaped here too, and nothing of the caller's
input is echoed back: a NUL, a lone surrogate or a NaN in the input can never break the error itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.orchestrator.errors import ProblemError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:contentline:problem:"


class FieldError(BaseModel):
    field: str = Field(description="Where: body.<path>, query.<name>, path.<name>, header.<name> or file:<line>")
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details; extension members may follow (e.g. `active_run_id`, `shortfall`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem; about:blank for plain HTTP errors")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


def clean(text: object, limit: int = 2000) -> str:
    """A message fit for a JSON body: control characters and lone surrogates escaped, length bounded."""
    out = str(text)[:limit]
    return "".join(
        c if (c >= " " or c in "\t\n") and not 0xD800 <= ord(c) <= 0xDFFF else f"\\u{ord(c):04x}" for c in out
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {clean(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int) or value is None:
        return value
    return clean(value)  # Decimal, float (NaN included), anything else: as text


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: Iterable[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"{TYPE_BASE}{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": clean(detail),
        "errors": [{"field": clean(e.field, 300), "reason": clean(e.reason, 500)} for e in errors],
    }
    reserved = set(body)
    body |= {clean(k): _jsonable(v) for k, v in (extra or {}).items() if k not in reserved}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=MEDIA_TYPE)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic/FastAPI validation errors as (field, reason) pairs; the offending input is never echoed."""
    out = []
    for error in errors:
        loc = ".".join(str(part) for part in error.get("loc", ())) or "body"
        reason = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            loc, reason = "body", f"invalid JSON: {(error.get('ctx') or {}).get('error', 'cannot be parsed')}"
        out.append(FieldError(field=loc, reason=reason))
    return out


def validation_problem(errors: list[FieldError]) -> JSONResponse:
    first = errors[0] if errors else FieldError(field="body", reason="invalid")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem_response(422, f"{first.field}: {first.reason}{more}", slug="validation", errors=errors[:100])


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.detail, slug=exc.slug, extra=exc.extra)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(field_errors(exc.errors()))


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
    return problem_response(exc.status_code, detail, headers=exc.headers)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return problem_response(500, "internal error; it was logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, all with the problem schema."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
