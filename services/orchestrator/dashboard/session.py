"""Signing in to the dashboard with an API key, the session cookie, and CSRF protection.

* Sign in with an account API key (the operator key acts on accounts, not inside one: refused). The
  browser gets a random session token in a cookie (HttpOnly, SameSite=Strict, Path=/dashboard, Secure
  when the request came over https — uvicorn takes the scheme from a local proxy's X-Forwarded-Proto);
  the database keeps only its SHA-256, bound to the key it signed in with. Revoking that key, signing
  out, or 12 hours end the session.
* Every state-changing request carries the session's CSRF token (htmx sends it as `X-CSRF-Token`, plain
  forms as `csrf_token`), and a cross-origin `Origin` header is refused. SameSite=Strict already keeps the
  cookie off cross-site requests; the token is the second lock. The sign-in form has its own token
  (double submit: a short-lived cookie and the same value in the form).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator.accounts import service as accounts
from services.orchestrator.dashboard import repository as repo
from services.orchestrator.web.auth import Authenticator
from shared.contracts import utcnow
from shared.db.models import DashboardSession

COOKIE = "cl_session"
SIGNIN_COOKIE = "cl_signin"
PATH = "/dashboard"
SESSION_LIFETIME = timedelta(hours=12)
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the account behind the session, the key it signed in with, its CSRF token."""

    account_id: str
    key_id: str
    csrf_token: str
    token_sha256: str


class SignInRequired(Exception):
    """No live session: pages redirect to the sign-in page, htmx requests are told to go there."""


class CsrfRejected(Exception):
    """A state-changing request without the session's CSRF token, or from another origin."""


class SignInRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Sessions:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], authenticator: Authenticator) -> None:
        self._sessions = sessions
        self._auth = authenticator

    async def sign_in(self, key: str) -> tuple[str, Viewer]:
        caller = await self._auth.identify(key.strip())
        if caller is None:
            raise SignInRefused("that API key is not valid (unknown, revoked or mistyped)")
        if caller.is_operator or caller.key_id is None:
            raise SignInRefused("the operator key has no account to show; sign in with an account's API key")
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), utcnow()
        row = DashboardSession(
            token_sha256=_sha256(token),
            account_id=caller.tenant,
            key_id=caller.key_id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
        async with self._sessions.begin() as session:
            await repo.remove_expired(session, now)
            await repo.add(session, row)
        return token, Viewer(row.account_id, row.key_id, csrf, row.token_sha256)

    async def viewer(self, token: str | None) -> Viewer | None:
        if not token or len(token) > 100:
            return None
        async with self._sessions() as session:
            row = await repo.live(session, _sha256(token), utcnow())
            if row is None or await accounts.live_key(session, row.key_id) is None:
                return None
            return Viewer(row.account_id, row.key_id, row.csrf_token, row.token_sha256)

    async def sign_out(self, viewer: Viewer) -> None:
        async with self._sessions.begin() as session:
            await repo.remove(session, viewer.token_sha256)

    async def require(self, request: Request) -> Viewer:
        viewer = await self.viewer(request.cookies.get(COOKIE))
        if viewer is None:
            raise SignInRequired()
        if request.method in UNSAFE:
            await check_csrf(request, viewer.csrf_token)
        return viewer


async def check_csrf(request: Request, expected: str) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRejected()
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not same(token, expected):
        raise CsrfRejected()


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path=PATH,
        secure=is_secure(request),
        httponly=True,
        samesite="strict",
    )


def signin_token(request: Request, response: Response) -> str:
    """The sign-in form's CSRF token (double submit), set as a short-lived cookie."""
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    response.set_cookie(
        SIGNIN_COOKIE, token, max_age=3600, path=PATH, secure=is_secure(request), httponly=True, samesite="strict"
    )
    return token
