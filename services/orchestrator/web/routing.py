"""Every /api/v1 route declares its kind, and its router enforces it; a test walks the route table and
checks each kind's promise (tests/integration/test_tenancy.py), so an unclassified route fails the suite.

    public             no key (health, docs)
    any_key            any valid key (global, read-only facts)
    account            an account key; every id in it must belong to the caller's account (else 404)
    owner_or_operator  an account key for its own account, or the operator key for any
    operator           the operator key only
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Security
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from services.orchestrator.web import problems
from services.orchestrator.web.auth import account_caller, any_caller, operator_caller
from services.orchestrator.web.jsonbody import StrictJsonRoute

KIND_KEY = "x-route-kind"


class RouteKind(StrEnum):
    PUBLIC = "public"
    ANY_KEY = "any_key"
    ACCOUNT = "account"
    OWNER_OR_OPERATOR = "owner_or_operator"
    OPERATOR = "operator"


_GUARD: dict[RouteKind, Callable[..., Any] | None] = {
    RouteKind.PUBLIC: None,
    RouteKind.ANY_KEY: any_caller,
    RouteKind.ACCOUNT: account_caller,
    RouteKind.OWNER_OR_OPERATOR: any_caller,
    RouteKind.OPERATOR: operator_caller,
}
# What the guard itself can answer: 401 without a valid key, 403 for the wrong kind of key.
_GUARD_STATUSES: dict[RouteKind, tuple[int, ...]] = {
    RouteKind.PUBLIC: (),
    RouteKind.ANY_KEY: (401,),
    RouteKind.ACCOUNT: (401, 403),
    RouteKind.OWNER_OR_OPERATOR: (401,),
    RouteKind.OPERATOR: (401, 403),
}


class KindRouter(APIRouter):
    """An APIRouter whose routes all have one kind: the guard runs first, the kind is in the OpenAPI
    (`x-route-kind`), and the statuses every route can return are declared with the problem schema."""

    def __init__(self, kind: RouteKind, **kwargs: Any) -> None:
        guard = _GUARD[kind]
        super().__init__(
            prefix="/api/v1",
            route_class=StrictJsonRoute,
            dependencies=[Security(guard)] if guard else [],
            **kwargs,
        )
        self.kind = kind

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        statuses = set(_GUARD_STATUSES[self.kind]) | {422}
        if "{" in path:
            statuses.add(404)
        if kwargs.get("methods") and set(kwargs["methods"]) & {"POST", "PUT", "PATCH"}:
            statuses.add(413)  # the app's body size limit
        kwargs["responses"] = problems.responses(*sorted(statuses)) | (kwargs.get("responses") or {})
        kwargs["openapi_extra"] = {KIND_KEY: self.kind.value} | (kwargs.get("openapi_extra") or {})
        super().add_api_route(path, endpoint, **kwargs)


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of a route table, also inside included routers (FastAPI keeps those as branches)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if isinstance(inner, APIRouter):
            yield from api_routes(inner.routes)


def route_kind(route: APIRoute) -> str | None:
    return (route.openapi_extra or {}).get(KIND_KEY)
