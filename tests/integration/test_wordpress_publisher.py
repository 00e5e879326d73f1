"""The publisher against a REAL WordPress (Debian's package, private MariaDB; devstack/wordpress.py), the real
broker and database: commands go in over Kafka, posts come out in WordPress, read back through its REST API.

Rows the orchestrator would have written (account, site, the draft's chain, images, the WordPress connection)
are inserted directly; the orchestrator's publishing schedule is later work.
"""

from __future__ import annotations

import hashlib
import io
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from devstack.wordpress import WordPressProcess
from services.publisher.connection import check_connection, check_site
from shared import secrets
from shared.contracts import PublicationStatusChanged, PublishCommand, PublishResult
from shared.db.models import (
    Account,
    Cluster,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    Publication,
    PublicationMedia,
    Site,
    WordPressConnection,
    WriterTask,
)
from shared.settings import Settings
from shared.topics import PUBLICATION_STATUS, PUBLISH_COMMANDS, PUBLISH_RESULTS
from tests.helpers import eventually, publish, read_topic

ALL_STATUSES = "publish,future,draft,pending,private,trash"
WRONG_PASSWORD = "abcd efgh ijkl mnop qrst uvwx"


@pytest.fixture(scope="module")
def wordpress(stack: Stack) -> Iterator[WordPressProcess]:
    """The stack's WordPress, started for these tests only; the publisher restarted to sync every second."""
    wp = stack.start_wordpress()
    stack.extra_env["CONTENTLINE_PUBLISHER_SYNC_SECONDS"] = "1"
    stack.stop_service("publisher")
    stack.start_service("publisher")
    yield wp
    stack.extra_env.pop("CONTENTLINE_PUBLISHER_SYNC_SECONDS", None)


@pytest.fixture
async def rest(wordpress: WordPressProcess) -> AsyncIterator[httpx.AsyncClient]:
    auth = (wordpress.admin_user, wordpress.app_password)
    async with httpx.AsyncClient(base_url=f"{wordpress.rest_url}/wp/v2", auth=auth, timeout=30) as client:
        yield client


@dataclass
class Seeded:
    account_id: str
    site_id: str
    draft_id: int
    title: str
    slug: str
    meta_description: str
    cluster: str
    keywords: list[str]
    images: list[dict[str, Any]] = field(default_factory=list)

    def command(self, **kw: Any) -> PublishCommand:
        return PublishCommand(account_id=self.account_id, site_id=self.site_id, draft_id=self.draft_id, **kw)


def png(seed: int) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (80, 60), ((seed * 70) % 256, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def seed_site(
    db: async_sessionmaker[AsyncSession], stack: Stack, wp: WordPressProcess, password: str | None = None
) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    account_id, site_id = f"acct-{tag}", f"site-{tag}"
    async with db.begin() as s:
        s.add(Account(id=account_id, name=f"account {tag}"))
        await s.flush()
        s.add(Site(id=site_id, account_id=account_id, name=f"site {tag}", domain="example.com"))
        await s.flush()
        s.add(
            WordPressConnection(
                site_id=site_id,
                base_url=wp.url,
                username=wp.admin_user,
                app_password_encrypted=secrets.encrypt(password or wp.app_password, SecretStr(stack.secret_key)),
            )
        )
    return account_id, site_id


async def seed_draft(
    db: async_sessionmaker[AsyncSession], stack: Stack, account_id: str, site_id: str, cluster: str = ""
) -> Seeded:
    tag = uuid.uuid4().hex[:8]
    cluster = cluster or f"Grinders {tag}"
    keywords = [f"burr grinder {tag}", f"espresso grinder {tag}", f"manual grinder {tag}"]
    seeded = Seeded(
        account_id,
        site_id,
        0,
        f"The best burr grinders ({tag})",
        f"best-burr-grinders-{tag}",
        f"How to choose a burr grinder ({tag}).",
        cluster,
        keywords,
    )
    body = (
        f"<p>Intro paragraph {tag}.</p>\n<h2>Why burrs</h2>\n<p>Even grounds.</p>\n"
        "<h2>Choosing one</h2>\n<p>Think about <strong>size</strong>.</p>\n<h2>Conclusion</h2>\n<p>Buy one.</p>"
    )
    async with db.begin() as s:
        c = Cluster(site_id=site_id, name=cluster, name_norm=cluster.lower(), intent="commercial", centroid=b"")
        s.add(c)
        await s.flush()
        idea = Idea(
            site_id=site_id, cluster_id=c.id, seq=0, title=seeded.title, content_type="guide", intent="commercial",
            primary_keyword=keywords[0], secondary_keywords=keywords[1:], outline=[], target_words=900, brief="",
        )  # fmt: skip
        s.add(idea)
        await s.flush()
        task = WriterTask(site_id=site_id, idea_id=idea.id, title=seeded.title)
        s.add(task)
        await s.flush()
        draft = Draft(
            site_id=site_id, task_id=task.id, title=seeded.title, slug=seeded.slug, meta_title=seeded.title[:60],
            meta_description=seeded.meta_description, body_markdown="(markdown)", body_html=body, word_count=20,
            target_words=900, quality_score=90,
        )  # fmt: skip
        s.add(draft)
        await s.flush()
        seeded.draft_id = draft.id
        for position, placement in enumerate(["featured", "after-section-1"]):
            prompt = ImagePrompt(
                site_id=site_id, draft_id=draft.id, position=position, placement=placement, prompt="a grinder",
                alt_text=f"alt {placement} {tag}", caption=f"caption {placement} {tag}",
            )  # fmt: skip
            s.add(prompt)
            await s.flush()
            data = png(position + draft.id)
            path = stack.media_dir / site_id / str(draft.id) / f"{position}-{prompt.id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            image = Image(
                site_id=site_id, prompt_id=prompt.id, draft_id=draft.id, path=str(path), checksum_sha256=sha,
                size_bytes=len(data), mime="image/png", width=80, height=60,
            )  # fmt: skip
            s.add(image)
            await s.flush()
            seeded.images.append(
                {"id": image.id, "placement": placement, "alt": prompt.alt_text, "caption": prompt.caption, "sha": sha}
            )
    return seeded


async def send(stack: Stack, cmd: PublishCommand) -> None:
    await publish(stack.kafka_bootstrap, PUBLISH_COMMANDS, cmd.model_dump_json().encode(), key=cmd.site_id.encode())


async def results_for(stack: Stack, command_id: str) -> list[PublishResult]:
    records = await read_topic(
        stack.kafka_bootstrap, PUBLISH_RESULTS, lambda r: command_id.encode() in r.value, idle_seconds=0.5
    )
    return [PublishResult.model_validate_json(r.value) for r in records]


async def result_of(stack: Stack, command_id: str) -> PublishResult:
    found = await eventually(lambda: results_for(stack, command_id), timeout=150, interval=1)
    assert len(found) == 1, found
    return found[0]


async def publication_or_none(db: async_sessionmaker[AsyncSession], draft_id: int) -> Publication | None:
    async with db() as s:
        return await s.scalar(select(Publication).where(Publication.draft_id == draft_id))


async def publication(db: async_sessionmaker[AsyncSession], draft_id: int) -> Publication:
    pub = await publication_or_none(db, draft_id)
    assert pub is not None
    return pub


async def set_connection(db: async_sessionmaker[AsyncSession], site_id: str, **values: Any) -> None:
    async with db.begin() as s:
        await s.execute(update(WordPressConnection).where(WordPressConnection.site_id == site_id).values(**values))


def closed_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def marked_posts(rest: httpx.AsyncClient, seeded: Seeded) -> list[dict[str, Any]]:
    marker = f"draft:{seeded.site_id}:{seeded.draft_id}"
    r = await rest.get("/posts", params={"contentline_key": marker, "status": ALL_STATUSES, "context": "edit"})
    assert r.status_code == 200, r.text
    return list(r.json())


async def marked_media(rest: httpx.AsyncClient, seeded: Seeded) -> list[dict[str, Any]]:
    found = []
    for image in seeded.images:
        r = await rest.get("/media", params={"contentline_key": f"image:{seeded.site_id}:{image['id']}"})
        assert r.status_code == 200, r.text
        found += r.json()
    return found


async def wordpress_refusal(wp: WordPressProcess) -> tuple[str, str]:
    async with httpx.AsyncClient(auth=(wp.admin_user, WRONG_PASSWORD), timeout=30) as client:
        r = await client.get(f"{wp.rest_url}/wp/v2/users/me", params={"context": "edit"})
    assert r.status_code == 401, r.text
    return r.json()["code"], r.json()["message"]


async def term_names(rest: httpx.AsyncClient, taxonomy: str, ids: list[int]) -> set[str]:
    r = await rest.get(f"/{taxonomy}", params={"include": ",".join(map(str, ids)), "per_page": 100})
    return {t["name"] for t in r.json()}


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

    records = await read_topic(stack.kafka_bootstrap, PUBLICATION_STATUS, lambda r: r.key == site_id.encode())
    events = [PublicationStatusChanged.model_validate_json(r.value) for r in records]
    assert [(e.previous_status, e.remote_status) for e in events] == [("publish", "trash"), ("trash", "deleted")]
    assert {(e.draft_id, e.remote_post_id, e.account_id) for e in events} == {(seeded.draft_id, post_id, account_id)}

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
