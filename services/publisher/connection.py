""" "Test connection": is this WordPress usable for publishing, and if not, what is wrong, in one line.

Checks in order, stopping at the first problem: the address answers; it has the WordPress REST API (wp/v2);
the user name and application password are accepted (GET /wp/v2/users/me?context=edit); the user may
publish posts and upload media. Also says whether the contentline mu-plugin and SEO fields are there.
The orchestrator's "test connection" route calls `check_connection` (or `check_site` for a stored row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.publisher import content
from services.publisher.wordpress import RetryPolicy, WordPressClient, WordPressError
from shared.db.models import WordPressConnection
from shared.secrets import SecretError, reveal
from shared.settings import Settings

_NEEDED_CAPABILITIES = {"publish_posts": "publish posts", "upload_files": "upload media"}


def may_not_publish(username: str, me: dict[str, object]) -> str | None:
    """Why this user (GET /users/me?context=edit) cannot publish through us, or None when they can."""
    capabilities = me.get("capabilities")
    granted = capabilities if isinstance(capabilities, dict) else {}
    missing = [what for cap, what in _NEEDED_CAPABILITIES.items() if not granted.get(cap)]
    if not missing:
        return None
    roles = me.get("roles")
    role = ", ".join(str(r) for r in roles) if isinstance(roles, list) and roles else "no role"
    return f"user {username} ({role}) may not {' or '.join(missing)} on this site"


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    problem: str = ""  # one line; empty when ok
    site_name: str = ""
    user: str = ""
    roles: list[str] = field(default_factory=list)
    marker_plugin: bool = False  # the contentline mu-plugin (duplicate-proof retries)
    seo_fields: bool = False  # Yoast SEO or Rank Math fields exposed for the title and description
    notes: list[str] = field(default_factory=list)


async def check_connection(
    base_url: str,
    username: str,
    password: str,
    *,
    request_seconds: float = 15.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ConnectionCheck:
    # One try per request: a person is waiting for the answer.
    policy = RetryPolicy(max_attempts=1, budget_seconds=request_seconds)
    async with WordPressClient(
        base_url, username, password, timeout=request_seconds, policy=policy, transport=transport
    ) as wp:
        try:
            index = await wp.discover()
        except WordPressError as exc:
            prefix = "" if exc.code == "no_rest_api" else f"{base_url} is not reachable: "
            return ConnectionCheck(False, prefix + exc.reason)
        if "wp/v2" not in (index.get("namespaces") or []):
            return ConnectionCheck(False, f"{base_url} has a REST API without wp/v2 (turned off by a plugin?)")
        notes = []
        if "application-passwords" not in (index.get("authentication") or {}):
            notes.append("the site does not announce application passwords (WordPress < 5.6, a plugin, or no HTTPS)")
        try:
            me = await wp.me()
        except WordPressError as exc:
            hint = f" ({notes[0]})" if notes and exc.status == 401 else ""
            return ConnectionCheck(False, f"user {username}: {exc.reason}{hint}", str(index.get("name") or ""))
        roles = [str(r) for r in me.get("roles") or []]
        name = str(index.get("name") or "")
        refusal = may_not_publish(username, me)
        if refusal:
            return ConnectionCheck(False, refusal, name, username, roles)
        try:
            meta_keys = await wp.post_meta_keys()
        except WordPressError as exc:
            return ConnectionCheck(False, f"cannot read the post schema: {exc.reason}", name, username, roles)
    marker = content.MARKER_KEY in meta_keys
    _, seo_note = content.seo_meta(meta_keys, "", "")
    if not marker:
        notes.append("install the contentline mu-plugin so that retries can never duplicate a post")
    if seo_note:
        notes.append(seo_note)
    return ConnectionCheck(True, "", name, username, roles, marker, seo_note is None, notes)


async def check_site(sessions: async_sessionmaker[AsyncSession], settings: Settings, site_id: str) -> ConnectionCheck:
    """`check_connection` for the site's stored connection (its password decrypted here, never returned)."""
    async with sessions() as session:
        conn = await session.get(WordPressConnection, site_id)
    if conn is None:
        return ConnectionCheck(False, f"site {site_id} has no WordPress connection")
    try:
        password = reveal(conn.app_password_encrypted, conn.app_password_ref, settings.secret_key)
    except SecretError as exc:
        return ConnectionCheck(False, str(exc))
    return await check_connection(
        conn.base_url, conn.username, password, request_seconds=settings.wordpress_timeout_seconds
    )
