"""The publisher against a REAL WordPress (Debian's package, private MariaDB; devstack/wordpress.py), the real
broker and database: commands go in over Kafka, posts come out in WordPress, read back through its REST API.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from devstack.wordpress import WordPressProcess
from shared import secrets
from shared.contracts import PublishCommand
from shared.db.models import Publication, PublicationMedia
from shared.topics import DLQ_REASON_HEADER, PUBLISH_COMMANDS, PUBLISH_DLQ
from tests.helpers import eventually, publish, read_topic
from tests.integration.wordpress_support import (
    WRONG_PASSWORD,
    closed_address,
    marked_media,
    marked_posts,
    png,
    publication,
    publication_or_none,
    ready_wordpress,
    result_of,
    results_for,
    seed_draft,
    seed_site,
    send,
    set_connection,
    term_names,
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


# ---------------------------------------------------------------------- (a) publish
async def test_a_draft_with_two_images_becomes_a_post_with_everything_in_place(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress)
    seeded = await seed_draft(db, stack, account_id, site_id, f"Coffee grinders {uuid.uuid4().hex[:6]}")
    cmd = seeded.command(run_id="run-publish-a")
    await send(stack, cmd)

    result = await result_of(stack, cmd.message_id)
    assert result.state == "published", result.reason
    assert (result.media_uploaded, result.media_reused, result.already_published) == (2, 0, False)
    assert any("SEO title and description skipped" in n for n in result.notes)

    post = (await rest.get(f"/posts/{result.remote_post_id}", params={"context": "edit"})).json()
    assert post["title"]["raw"] == seeded.title
    assert post["slug"] == seeded.slug
    assert post["status"] == "publish" and result.remote_status == "publish"
    assert post["link"] == result.url and post["link"].startswith(wordpress.url)
    assert post["excerpt"]["raw"] == seeded.meta_description
    assert post["meta"]["contentline_key"] == f"draft:{site_id}:{seeded.draft_id}"
    assert await term_names(rest, "categories", post["categories"]) == {seeded.cluster}
    assert await term_names(rest, "tags", post["tags"]) == set(seeded.keywords)

    async with db() as s:
        rows = await s.execute(select(PublicationMedia.image_id, PublicationMedia.remote_media_id))
        media: dict[int, int] = dict(rows.all())
    featured, inline = seeded.images
    assert post["featured_media"] == media[featured["id"]]
    body = post["content"]["raw"]
    assert "Intro paragraph" in body and "<strong>size</strong>" in body
    inline_media = (await rest.get(f"/media/{media[inline['id']]}", params={"context": "edit"})).json()
    # The inline image sits after the first section, pointing at the uploaded copy; the featured one is not inline.
    assert f'src="{inline_media["source_url"]}"' in body
    assert body.index("Why burrs") < body.index(inline_media["source_url"]) < body.index("Choosing one")
    assert f"wp-image-{media[featured['id']]}" not in body
    for image in seeded.images:
        uploaded = (await rest.get(f"/media/{media[image['id']]}", params={"context": "edit"})).json()
        assert uploaded["alt_text"] == image["alt"]
        assert uploaded["caption"]["raw"] == image["caption"]
        file = httpx.get(uploaded["source_url"], timeout=30)
        assert hashlib.sha256(file.content).hexdigest() == image["sha"]

    pub = await publication(db, seeded.draft_id)
    assert (pub.state, pub.remote_post_id, pub.url, pub.remote_status) == (
        "published",
        post["id"],
        post["link"],
        "publish",
    )
    assert pub.command_id == cmd.message_id and pub.run_id == "run-publish-a" and pub.last_error is None


# ---------------------------------------------------------------------- (b) idempotency
async def test_the_same_command_twice_and_a_second_command_make_one_post(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress)
    seeded = await seed_draft(db, stack, account_id, site_id)
    cmd = seeded.command()
    await send(stack, cmd)
    await send(stack, cmd)  # redelivered
    first = await result_of(stack, cmd.message_id)
    assert first.state == "published", first.reason

    again = seeded.command()  # the orchestrator asks again (a retry with a new command id)
    await send(stack, again)
    second = await result_of(stack, again.message_id)
    assert second.already_published and second.remote_post_id == first.remote_post_id

    assert len(await results_for(stack, cmd.message_id)) == 1  # the duplicate delivery produced no result
    assert [p["id"] for p in await marked_posts(rest, seeded)] == [first.remote_post_id]
    assert len(await marked_media(rest, seeded)) == 2


async def test_a_post_and_an_image_an_interrupted_attempt_created_are_adopted_not_duplicated(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    """A crash after WordPress created the post (and an image) but before we recorded them: the markers find them."""
    account_id, site_id = await seed_site(db, stack, wordpress)
    seeded = await seed_draft(db, stack, account_id, site_id)
    featured = seeded.images[0]
    r = await rest.post(
        "/media",
        files={"file": ("early.png", png(1), "image/png")},
        data={"meta[contentline_key]": f"image:{site_id}:{featured['id']}"},
    )
    assert r.status_code == 201, r.text
    early_media = r.json()["id"]
    r = await rest.post(
        "/posts",
        json={
            "title": "half-done",
            "status": "draft",
            "meta": {"contentline_key": f"draft:{site_id}:{seeded.draft_id}"},
        },
    )
    assert r.status_code == 201, r.text
    early_post = r.json()["id"]

    cmd = seeded.command()
    await send(stack, cmd)
    result = await result_of(stack, cmd.message_id)
    assert result.state == "published", result.reason
    assert result.remote_post_id == early_post and (result.media_uploaded, result.media_reused) == (1, 1)
    post = (await rest.get(f"/posts/{early_post}", params={"context": "edit"})).json()
    assert (post["title"]["raw"], post["status"], post["featured_media"]) == (seeded.title, "publish", early_media)
    adopted = (await rest.get(f"/media/{early_media}", params={"context": "edit"})).json()
    assert (adopted["alt_text"], adopted["caption"]["raw"]) == (featured["alt"], featured["caption"])
    assert len(await marked_posts(rest, seeded)) == 1 and len(await marked_media(rest, seeded)) == 2


# ---------------------------------------------------------------------- (c) failures
async def test_wrong_credentials_fail_the_draft_with_wordpress_reason_and_the_next_command_publishes(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress, password=WRONG_PASSWORD)
    bad = await seed_draft(db, stack, account_id, site_id)
    cmd = bad.command()
    await send(stack, cmd)
    result = await result_of(stack, cmd.message_id)
    assert result.state == "failed" and result.permanent
    # WordPress's own code and message for these credentials (which one depends on its version).
    code, message = await wordpress_refusal(wordpress)
    assert result.reason == f"WordPress refused the credentials (401 {code}): {message}"
    pub = await publication(db, bad.draft_id)
    assert pub.state == "failed" and pub.last_error == result.reason and pub.remote_post_id is None
    assert await marked_posts(rest, bad) == []

    # The same site, fixed: the publisher kept consuming its partition and publishes the next draft.
    await set_connection(
        db, site_id, app_password_encrypted=secrets.encrypt(wordpress.app_password, SecretStr(stack.secret_key))
    )
    good = await seed_draft(db, stack, account_id, site_id)
    cmd = good.command()
    await send(stack, cmd)
    assert (await result_of(stack, cmd.message_id)).state == "published"


async def test_an_unreachable_site_is_retried_and_publishes_once_it_answers(
    stack: Stack, wordpress: WordPressProcess, rest: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress)
    closed = closed_address()
    await set_connection(db, site_id, base_url=closed)
    seeded = await seed_draft(db, stack, account_id, site_id)
    cmd = seeded.command()
    await send(stack, cmd)

    async def waiting() -> Publication | None:
        pub = await publication_or_none(db, seeded.draft_id)
        return pub if pub is not None and pub.state == "scheduled" else None

    pub = await eventually(waiting, timeout=90)
    assert pub.last_error.startswith("will retry: cannot connect to the site")
    await set_connection(db, site_id, base_url=wordpress.url)  # the site is back
    result = await result_of(stack, cmd.message_id)
    assert result.state == "published" and len(await marked_posts(rest, seeded)) == 1


async def test_a_user_who_may_not_publish_fails_with_wordpress_reason(
    stack: Stack, wordpress: WordPressProcess, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress)
    password = secrets.encrypt(wordpress.subscriber_app_password, SecretStr(stack.secret_key))
    await set_connection(db, site_id, username=wordpress.subscriber_user, app_password_encrypted=password)
    seeded = await seed_draft(db, stack, account_id, site_id)
    cmd = seeded.command()
    await send(stack, cmd)
    result = await result_of(stack, cmd.message_id)
    assert result.state == "failed"
    assert result.reason == "user subscriber (subscriber) may not publish posts or upload media on this site"


async def test_another_accounts_draft_is_not_found(
    stack: Stack, wordpress: WordPressProcess, db: async_sessionmaker[AsyncSession]
) -> None:
    account_id, site_id = await seed_site(db, stack, wordpress)
    seeded = await seed_draft(db, stack, account_id, site_id)
    cmd = PublishCommand(account_id="someone-else", site_id=site_id, draft_id=seeded.draft_id)
    await send(stack, cmd)
    result = await result_of(stack, cmd.message_id)
    assert result.state == "failed" and result.reason == f"draft {seeded.draft_id} not found for site {site_id}"


async def test_an_unusable_command_is_dead_lettered_with_the_reason(stack: Stack) -> None:
    key = uuid.uuid4().hex.encode()
    await publish(stack.kafka_bootstrap, PUBLISH_COMMANDS, b'{"site_id": "s", "draft_id": "seven"}', key=key)
    records = await eventually(
        lambda: read_topic(stack.kafka_bootstrap, PUBLISH_DLQ, lambda r: r.key == key, idle_seconds=0.5), timeout=60
    )
    reason = dict(records[0].headers)[DLQ_REASON_HEADER].decode()
    assert reason.startswith("invalid message: ") and "draft_id" in reason and "account_id" in reason
