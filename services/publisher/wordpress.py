"""A small async client for the WordPress REST API (wp/v2, application-password auth) and what its errors mean.

Errors are classified here, once: transient (timeouts, connection failures, 408/425/429, 5xx) are retried with
jittered back-off inside a time budget, honouring Retry-After; everything else is permanent and carries
WordPress's own code and message. Requests that CREATE something (a post, a medium, a term) are never
retried blindly: a timed-out create may have happened, so the caller looks the object up by its marker
before it tries again (see service.py).
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential, wait_random

TRANSIENT_STATUSES = frozenset({408, 425, 429})
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
USER_AGENT = "contentline-publisher/1"


class WordPressError(Exception):
    """A failed WordPress call; `str(exc)` is a one-line reason fit for a person (and never holds a password)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        code: str = "",
        transient: bool = False,
        retry_after: float | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.transient = transient
        self.retry_after = retry_after
        self.data: Mapping[str, Any] = data or {}

    @property
    def reason(self) -> str:
        return str(self)


def clean_text(text: str, limit: int = 500) -> str:
    """WordPress messages carry HTML (`<strong>Error:</strong>`) and entities: one plain line."""
    plain = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()
    return plain if len(plain) <= limit else plain[: limit - 3] + "..."


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - (time.time() if now is None else now))
    return None


def _lead(status: int, code: str) -> str:
    if status == 401:
        return "WordPress refused the credentials"
    if status == 403:
        return "WordPress does not allow this user to do that"
    if status == 404 and code == "rest_no_route":
        return "no such WordPress REST route (is the REST API enabled at this address?)"
    if status == 404:
        return "not found on WordPress"
    if status == 413:
        return "too large for the site (its upload or request size limit)"
    if status == 429:
        return "WordPress is rate-limiting us"
    if status >= 500:
        return "WordPress failed"
    return "WordPress rejected the request"


def classify_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> WordPressError:
    """The error for a non-2xx response: transient or permanent, with WordPress's code and message."""
    code, message, data = "", "", dict[str, Any]()
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        payload = json.loads(body)
        if isinstance(payload, dict):
            code = str(payload.get("code") or "")
            message = clean_text(str(payload.get("message") or ""))
            data = payload["data"] if isinstance(payload.get("data"), dict) else {}
    if not message:  # a proxy's or PHP's error page, not WordPress's JSON
        message = clean_text(body.decode("utf-8", errors="replace"), 200)
    if not message:
        with contextlib.suppress(ValueError):
            message = HTTPStatus(status).phrase
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    if params:  # rest_invalid_param names each field that was refused, and why
        message += " [" + "; ".join(f"{k}: {clean_text(str(v), 200)}" for k, v in params.items()) + "]"
    transient = status in TRANSIENT_STATUSES or (status >= 500 and status != 501)
    label = f"{status} {code}".strip()
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    return WordPressError(
        f"{_lead(status, code)} ({label}): {message}",
        status=status,
        code=code,
        transient=transient,
        retry_after=retry_after,
        data=data,
    )


def classify_transport(exc: httpx.HTTPError) -> WordPressError:
    """The error for a request that got no HTTP answer at all."""
    if isinstance(exc, httpx.TimeoutException):
        return WordPressError(f"WordPress did not answer in time ({type(exc).__name__})", transient=True)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return WordPressError(f"the site address is not usable: {exc}", code="bad_url")
    if isinstance(exc, httpx.TooManyRedirects):
        return WordPressError("the site redirects in circles (too many redirects)", code="redirects")
    if isinstance(exc, httpx.ConnectError):
        # Also what a mistyped host looks like; the connection check says so at once, retries give up in time.
        return WordPressError(f"cannot connect to the site: {exc or type(exc).__name__}", transient=True)
    return WordPressError(f"the connection to the site failed: {exc or type(exc).__name__}", transient=True)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    budget_seconds: float = 60.0
    max_wait_seconds: float = 20.0


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, WordPressError) and exc.transient


def backoff(policy: RetryPolicy) -> Any:
    """Jittered exponential back-off, or longer when the site said so (Retry-After), within the policy's cap."""
    base = wait_exponential(multiplier=0.5, max=policy.max_wait_seconds) + wait_random(0, 0.5)

    def wait(state: RetryCallState) -> float:
        delay = float(base(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, WordPressError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return min(delay, policy.max_wait_seconds)

    return wait


class WordPressClient:
    """One site, one user. Use as `async with WordPressClient(...) as wp:`."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._policy = policy or RetryPolicy()
        self._http = httpx.AsyncClient(
            auth=httpx.BasicAuth(username, password),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=True,
            transport=transport,
        )
        self._pretty = True  # /wp-json/...; discover() switches to ?rest_route= for sites without pretty links

    async def __aenter__(self) -> WordPressClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def _url(self, route: str) -> tuple[str, dict[str, str]]:
        if self._pretty:
            return f"{self.base_url}/wp-json{route}", {}
        return f"{self.base_url}/", {"rest_route": route}

    async def _send(self, method: str, route: str, *, authenticated: bool = True, **kwargs: Any) -> Any:
        url, params = self._url(route)
        params.update(kwargs.pop("params", None) or {})
        auth: Any = httpx.USE_CLIENT_DEFAULT if authenticated else None
        try:
            response = await self._http.request(method, url, params=params or None, auth=auth, **kwargs)
        except httpx.HTTPError as exc:
            raise classify_transport(exc) from exc
        if response.status_code >= 400:
            raise classify_response(response.status_code, response.content, response.headers)
        try:
            return response.json()
        except ValueError as exc:
            raise WordPressError(
                f"not a WordPress REST API answer from {response.url.copy_with(query=None)} "
                f"(HTTP {response.status_code}, {response.headers.get('content-type', 'no content type')})",
                code="not_rest",
            ) from exc

    async def request(self, method: str, route: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """The decoded JSON answer; transient failures retried unless `retry=False` (creating requests)."""
        if not retry:
            return await self._send(method, route, **kwargs)
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._policy.max_attempts) | stop_after_delay(self._policy.budget_seconds),
            wait=backoff(self._policy),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(method, route, **kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # ------------------------------------------------------------------ discovery and identity
    async def discover(self) -> dict[str, Any]:
        """The REST index (name, namespaces, authentication), unauthenticated; finds /wp-json/ or ?rest_route=."""
        fields = {"_fields": "name,url,home,namespaces,authentication"}
        try:
            index = await self.request("GET", "/", params=fields, authenticated=False)
        except WordPressError as exc:
            if exc.transient or exc.code == "bad_url":
                raise
            self._pretty = False  # plain permalinks: the API answers at /?rest_route=/ only
            try:
                index = await self.request("GET", "/", params=fields, authenticated=False)
            except WordPressError as plain_exc:
                if plain_exc.transient:
                    raise
                self._pretty = True
                raise WordPressError(
                    f"no WordPress REST API at {self.base_url} (neither /wp-json/ nor /?rest_route=/ answers: {exc})",
                    code="no_rest_api",
                ) from plain_exc
        if not isinstance(index, dict) or "namespaces" not in index:
            raise WordPressError(f"no WordPress REST API at {self.base_url} (the answer is not its index)")
        return index

    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/wp/v2/users/me", params={"context": "edit"}))

    async def post_meta_keys(self) -> set[str]:
        """Post meta fields the site exposes to the REST API (the marker, SEO fields)."""
        schema = await self.request("OPTIONS", "/wp/v2/posts")
        meta = (schema.get("schema") or {}).get("properties", {}).get("meta", {}) if isinstance(schema, dict) else {}
        return set((meta.get("properties") or {}).keys())

    # ------------------------------------------------------------------ posts
    async def find_posts(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/wp/v2/posts", params={"context": "edit", **params}))

    async def get_post(self, post_id: int) -> dict[str, Any] | None:
        """The post, or None when WordPress says it does not exist (deleted for good)."""
        try:
            return dict(await self.request("GET", f"/wp/v2/posts/{post_id}", params={"context": "edit"}))
        except WordPressError as exc:
            if exc.status in (404, 410) and exc.code in ("rest_post_invalid_id", ""):
                return None
            raise

    async def create_post(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/wp/v2/posts", retry=False, json=payload))

    async def update_post(self, post_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", f"/wp/v2/posts/{post_id}", json=payload))

    # ------------------------------------------------------------------ media
    async def find_media(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/wp/v2/media", params={"context": "edit", **params}))

    async def upload_media(self, data: bytes, filename: str, mime: str, fields: dict[str, str]) -> dict[str, Any]:
        """One request creates the attachment with its alt text, caption and marker (multipart form)."""
        return dict(
            await self.request("POST", "/wp/v2/media", retry=False, files={"file": (filename, data, mime)}, data=fields)
        )

    async def update_media(self, media_id: int, fields: dict[str, str]) -> dict[str, Any]:
        return dict(await self.request("POST", f"/wp/v2/media/{media_id}", json=fields))

    # ------------------------------------------------------------------ terms
    async def find_terms(self, taxonomy: str, search: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/wp/v2/{taxonomy}", params={"search": search, "per_page": 100}))

    async def create_term(self, taxonomy: str, name: str) -> int:
        """The new term's id; an existing term of that name (a race, or a lookup miss) is simply used."""
        try:
            created = await self.request("POST", f"/wp/v2/{taxonomy}", retry=False, json={"name": name})
        except WordPressError as exc:
            if exc.code == "term_exists" and isinstance(exc.data.get("term_id"), int):
                return int(exc.data["term_id"])
            raise
        return int(created["id"])
