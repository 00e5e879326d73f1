"""Strict JSON request bodies and query strings for every route (a custom APIRoute class).

Python's json module accepts what JSON does not: bare `NaN`, `Infinity`, `-Infinity`, and turns `1e309`
into infinity. Those are refused here as 422 naming the field, as is any string (key or value) with a
NUL, another C0 control character (TAB, LF, CR are fine) or a lone surrogate, whatever model the body
goes to next. Large bodies are parsed in a worker thread so a 100,000-keyword import does not hold the
event loop while other requests wait. A query parameter the route does not declare is refused too (a
misspelt `sise=10` silently ignored would return the wrong page without a word).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from services.orchestrator.safetext import describe_bad_char

THREAD_THRESHOLD_BYTES = 256 * 1024
MAX_DEPTH = 64


class _NotFinite:
    """Stands in for a number JSON cannot carry, so the walk can say where it was."""

    def __init__(self, token: str) -> None:
        self.token = token


def _float(token: str) -> float | _NotFinite:
    value = float(token)
    return value if math.isfinite(value) else _NotFinite(token)


def _error(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"type": kind, "loc": ("body", *loc), "msg": msg, "input": None}


def _walk(value: Any, loc: tuple[str | int, ...], errors: list[dict[str, Any]], depth: int = 0) -> None:
    if len(errors) >= 20:
        return
    if depth > MAX_DEPTH:
        errors.append(_error(loc, f"nested deeper than {MAX_DEPTH} levels"))
    elif isinstance(value, _NotFinite):
        errors.append(_error(loc, f"{value.token} is not a finite JSON number", "finite_number"))
    elif isinstance(value, str):
        if problem := describe_bad_char(value):
            errors.append(_error(loc, problem, "string_characters"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if problem := describe_bad_char(key):
                errors.append(_error((*loc, "<key>"), f"object key {problem}", "string_characters"))
            _walk(item, (*loc, key if describe_bad_char(key) is None else "<key>"), errors, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, (*loc, index), errors, depth + 1)


def strict_loads(body: bytes) -> Any:
    """The parsed body, or RequestValidationError naming each offending field."""
    try:
        value = json.loads(body, parse_float=_float, parse_constant=_NotFinite)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [_error((), f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "json_invalid")]
        ) from None
    except RecursionError:
        raise RequestValidationError(
            [_error((), f"invalid JSON: nested deeper than {MAX_DEPTH} levels", "json_invalid")]
        ) from None
    except ValueError as exc:  # undecodable bytes, an integer with more than 4300 digits
        raise RequestValidationError([_error((), f"invalid JSON: {str(exc)[:200]}", "json_invalid")]) from None
    errors: list[dict[str, Any]] = []
    _walk(value, (), errors)
    if errors:
        raise RequestValidationError(errors)
    return value


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route and all of its dependencies declare."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        declared = _query_names(self.dependant)

        async def strict_handler(request: Request) -> Response:
            unknown = [name for name in request.query_params if name not in declared]
            if unknown:
                raise RequestValidationError(
                    [
                        {
                            "type": "extra_forbidden",
                            "loc": ("query", "<unknown>"),
                            "input": None,
                            "msg": f"unknown query parameter {name[:40]!r}"
                            + (
                                f" (this route takes: {', '.join(sorted(declared))})"
                                if declared
                                else " (this route takes none)"
                            ),
                        }
                        for name in dict.fromkeys(unknown)
                    ][:20]
                )
            if request.method in {"POST", "PUT", "PATCH"} and _is_json(request):
                body = await request.body()
                if body:
                    # Starlette's Request.json() returns what is cached here; FastAPI then validates it.
                    big = len(body) > THREAD_THRESHOLD_BYTES
                    parsed = await asyncio.to_thread(strict_loads, body) if big else strict_loads(body)
                    vars(request)["_json"] = parsed
            return await handler(request)

        return strict_handler
