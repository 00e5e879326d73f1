"""The dashboard as a sub-application mounted at /dashboard: pages, fragments, the push stream, the static
assets (htmx vendored in the repo: nothing is loaded from elsewhere), error pages, security headers.

Its routes are not part of the API's OpenAPI document; every one of them that names a site, run, draft
or image looks it up through the signed-in account, exactly like the API (tests/integration/
test_content_dashboard.py walks this route table for that).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from services.orchestrator.dashboard import pages_content, pages_history, pages_review, pages_site
from services.orchestrator.dashboard.context import Dashboard, is_htmx
from services.orchestrator.dashboard.render import HERE
from services.orchestrator.dashboard.session import CsrfRejected, SignInRequired
from services.orchestrator.errors import ProblemError
from services.orchestrator.web.problems import clean, field_errors

log = logging.getLogger(__name__)

# Everything from this origin, nothing inline: htmx is configured with a meta tag, never eval.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.media_type == "text/html" or response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _error(
    ctx: Dashboard,
    request: Request,
    status: int,
    detail: str,
    extra: dict[str, object] | None = None,
    errors: list[tuple[str, str]] | None = None,
) -> HTMLResponse:
    """An htmx request gets an alert in the page's alert region; a page load gets an error page."""
    context = {"status": status, "detail": clean(detail), "extra": extra or {}, "errors": errors or []}
    if is_htmx(request):
        return ctx.templates.fragment(
            "partials/alert.html",
            status_code=status,
            headers={"HX-Retarget": "#alerts", "HX-Reswap": "innerHTML"},
            **context,
        )
    return ctx.templates.page(request, "error.html", None, status_code=status, sites=[], site=None, **context)


def install_errors(app: FastAPI, ctx: Dashboard) -> None:
    async def sign_in(request: Request, _: Exception) -> Response:
        target = "/dashboard/signin"
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        path = request.url.path if request.method == "GET" else "/dashboard/"
        return RedirectResponse(f"{target}?next={path}", status_code=303)

    async def csrf(request: Request, _: Exception) -> Response:
        return _error(ctx, request, 403, "this form is stale or came from another site; reload the page")

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return _error(ctx, request, exc.status, exc.detail, exc.extra)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [(e.field, e.reason) for e in field_errors(exc.errors())]
        return _error(ctx, request, 422, "some fields need another value", errors=errors)

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "not found"
        return _error(ctx, request, exc.status_code, detail)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("dashboard: unhandled error: %s", type(exc).__name__, exc_info=exc)
        return _error(ctx, request, 500, "internal error; it was logged")

    app.add_exception_handler(SignInRequired, sign_in)
    app.add_exception_handler(CsrfRejected, csrf)
    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)


def build(ctx: Dashboard) -> FastAPI:
    app = FastAPI(title="contentline dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (pages_site, pages_content, pages_review, pages_history):
        app.include_router(module.router(ctx))
    install_errors(app, ctx)
    app.add_middleware(SecurityHeaders)
    return app
