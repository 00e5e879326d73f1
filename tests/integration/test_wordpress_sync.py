"""The status sync and the connection check against a REAL WordPress (devstack/wordpress.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from devstack.wordpress import WordPressProcess
from services.publisher.connection import check_connection, check_site
from shared import secrets
from shared.contracts import PublicationStatusChanged
from shared.settings import Settings
from shared.topics import PUBLICATION_STATUS
from tests.helpers import eventually, read_topic
from tests.integration.wordpress_support import (
    WRONG_PASSWORD,
    closed_address,
    marked_posts,
    publication,
    ready_wordpress,
    result_of,
    seed_draft,
    seed_site,
    send,
    wordpress_refusal,
)


@pytest.fixture(scope="module")
def wordpress(stack: Stack) -> WordPressProcess:
    return ready_wordpress(stack)


@pytest.fixture
async def rest(wordpress: WordPressProcess) -> AsyncIterator[httpx.AsyncClient]:
    auth = (wordpress.admin_user, wordpress.app_password)
    async with httpx.AsyncClient(base_url=f"{wordpress.rest_url}/wp/v2", auth=auth, timeout=30) as client:
        yield client


# ---------------------------------------------------------------------- (d) status sync
async def test_trash_then_delete_in_wordpress_show_on_the_publication_and_nothing_is_resurrected(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress)
    seeded = await seed_draft(db, stack, account_id, site_id)
    cmd = seeded.command()
    await send(stack, cmd)
    post_id = (await result_of(stack, cmd.message_id)).remote_post_id

    async def remote_status_is(expected: str) -> bool:
        return (await publication(db, seeded.draft_id)).remote_status == expected

    assert (await rest.delete(f"/posts/{post_id}")).json()["status"] == "trash"
    await eventually(lambda: remote_status_is("trash"), timeout=60)
    assert (await rest.delete(f"/posts/{post_id}", params={"force": "true"})).json()["deleted"] is True
    await eventually(lambda: remote_status_is("deleted"), timeout=60)
    pub = await publication(db, seeded.draft_id)
    assert pub.state == "published" and pub.url is not None  # the address it had stays on record

    async def events() -> list[PublicationStatusChanged]:
        records = await read_topic(stack.kafka_bootstrap, PUBLICATION_STATUS, lambda r: r.key == site_id.encode())
        found = [PublicationStatusChanged.model_validate_json(r.value) for r in records]
        return found if len(found) >= 2 else []  # the outbox relay may still be on its way with the second

    changes = await eventually(events, timeout=60, interval=1)
    assert [(e.previous_status, e.remote_status) for e in changes] == [("publish", "trash"), ("trash", "deleted")]
    assert {(e.draft_id, e.remote_post_id, e.account_id) for e in changes} == {(seeded.draft_id, post_id, account_id)}

    again = seeded.command()
    await send(stack, again)
    result = await result_of(stack, again.message_id)
    assert result.already_published and result.remote_status == "deleted"
    assert await marked_posts(rest, seeded) == []


# ---------------------------------------------------------------------- test connection
async def test_connection_check_says_what_is_wrong_in_one_line(
    stack: Stack, wordpress: WordPressProcess, db: async_sessionmaker[AsyncSession]
) -> None:
    ok = await check_connection(wordpress.url, wordpress.admin_user, wordpress.app_password)
    assert ok.ok and ok.problem == "" and ok.marker_plugin and not ok.seo_fields
    assert ok.roles == ["administrator"] and ok.site_name

    _, site_id = await seed_site(db, stack, wordpress)  # the stored connection, its password decrypted
    settings = Settings(database_url=stack.database_url, secret_key=SecretStr(stack.secret_key))
    assert (await check_site(db, settings, site_id)).ok
    assert (await check_site(db, Settings(secret_key=SecretStr(secrets.new_key())), site_id)).problem == (
        "the stored password cannot be decrypted with CONTENTLINE_SECRET_KEY "
        "(was it encrypted with a key that has since been dropped?)"
    )

    wrong = await check_connection(wordpress.url, wordpress.admin_user, WRONG_PASSWORD)
    code, message = await wordpress_refusal(wordpress)
    assert wrong.problem == f"user admin: WordPress refused the credentials (401 {code}): {message}"

    subscriber = await check_connection(wordpress.url, wordpress.subscriber_user, wordpress.subscriber_app_password)
    assert subscriber.problem == "user subscriber (subscriber) may not publish posts or upload media on this site"

    not_wordpress = await check_connection(stack.fake_url, "admin", "x")
    assert not not_wordpress.ok and "no WordPress REST API" in not_wordpress.problem

    closed = closed_address()
    down = await check_connection(closed, "admin", "x", request_seconds=5)
    assert not down.ok and down.problem.startswith(f"{closed} is not reachable: cannot connect")
