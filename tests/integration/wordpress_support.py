"""Shared by the WordPress integration tests: the local WordPress made ready for them, and rows the
orchestrator would have written (account, site, the draft's chain, images, the WordPress connection)."""

from __future__ import annotations

import hashlib
import io
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image as PILImage
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from devstack.wordpress import WordPressProcess
from shared import secrets
from shared.contracts import PublishCommand, PublishResult
from shared.db.models import (
    Account,
    Cluster,
    Draft,
    Idea,
    Image,
    ImagePrompt,
    Publication,
    Site,
    WordPressConnection,
    WriterTask,
)
from shared.topics import PUBLISH_COMMANDS, PUBLISH_RESULTS
from tests.helpers import eventually, publish, read_topic

ALL_STATUSES = "publish,future,draft,pending,private,trash"
WRONG_PASSWORD = "abcd efgh ijkl mnop qrst uvwx"
_SYNC_ENV = "CONTENTLINE_PUBLISHER_SYNC_SECONDS"


def ready_wordpress(stack: Stack) -> WordPressProcess:
    """The stack's WordPress (started once per session), and the publisher restarted once to sync every second."""
    wp = stack.start_wordpress()
    if stack.extra_env.get(_SYNC_ENV) != "1":
        stack.extra_env[_SYNC_ENV] = "1"
        stack.stop_service("publisher")
        stack.start_service("publisher")
    return wp


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
