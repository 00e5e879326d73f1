"""`contentline content ...`: a site's keywords, clusters, ideas, tasks, drafts and images, and the edits
that keep the pipeline consistent (disable/enable keywords; rename, move, merge, split clusters; edit,
restore and regenerate drafts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from contentline_cli.session import client_for, console
from contentline_cli.sites import keywords_list

content_app = typer.Typer(no_args_is_help=True, help="Browse a site's content and fix it (clusters, keywords, drafts).")

PageOption = Annotated[int, typer.Option(min=1, help="Page number.")]
SizeOption = Annotated[int, typer.Option(min=1, max=500, help="Entries per page.")]
KeywordIds = Annotated[list[int], typer.Option("--keyword", "-k", help="A keyword id (repeat for several).")]

COLUMNS: dict[str, tuple[str, ...]] = {
    "clusters": ("id", "name", "size", "ideas", "intent"),
    "ideas": ("id", "title", "cluster_name", "content_type", "has_task"),
    "tasks": ("id", "title", "draft_id", "drafts"),
    "drafts": ("id", "title", "status", "quality_score", "decision", "edited"),
    "images": ("id", "draft_id", "placement", "width", "height", "alt_text"),
}


def _table(kind: str, page: dict[str, Any]) -> None:
    table = Table(box=box.SIMPLE_HEAD, title=f"{page['total']} {kind} (page {page['page']})")
    for column in COLUMNS[kind]:
        table.add_column(column.replace("_", " "))
    for item in page["items"]:
        table.add_row(*("" if item.get(c) is None else str(item.get(c)) for c in COLUMNS[kind]))
    console.print(table)


def _list(ctx: typer.Context, site_id: str, kind: str, **params: Any) -> None:
    with client_for(ctx) as client:
        _table(kind, client.content_page(site_id, kind, **params))


# The same command as `contentline keywords list` (one keyword list in the API, one in the CLI).
content_app.command("keywords")(keywords_list)


@content_app.command("clusters")
def clusters(
    ctx: typer.Context,
    site_id: str,
    q: Annotated[str | None, typer.Option("--contains", help="Text the name contains.")] = None,
    sort: Annotated[str, typer.Option(help="id, name, size_desc.")] = "size_desc",
    page: PageOption = 1,
    size: SizeOption = 50,
) -> None:
    """A site's clusters with their size and ideas."""
    _list(ctx, site_id, "clusters", q=q, sort=sort, page=page, size=size, keywords=0)


@content_app.command("ideas")
def ideas(ctx: typer.Context, site_id: str, page: PageOption = 1, size: SizeOption = 50) -> None:
    """A site's content ideas."""
    _list(ctx, site_id, "ideas", page=page, size=size)


@content_app.command("tasks")
def tasks(ctx: typer.Context, site_id: str, page: PageOption = 1, size: SizeOption = 50) -> None:
    """A site's writer tasks and their live draft."""
    _list(ctx, site_id, "tasks", page=page, size=size)


@content_app.command("drafts")
def drafts(
    ctx: typer.Context,
    site_id: str,
    status: Annotated[
        str | None,
        typer.Option(help="writing_images, in_review, approved, rejected, published, superseded."),
    ] = None,
    page: PageOption = 1,
    size: SizeOption = 50,
) -> None:
    """A site's drafts with status, quality score and decision."""
    _list(ctx, site_id, "drafts", status=status, page=page, size=size)


@content_app.command("images")
def images(
    ctx: typer.Context,
    site_id: str,
    draft: Annotated[int | None, typer.Option(help="Only this draft's images.")] = None,
    page: PageOption = 1,
    size: SizeOption = 50,
) -> None:
    """A site's generated images."""
    _list(ctx, site_id, "images", draft_id=draft, page=page, size=size)


@content_app.command("disable")
def disable(ctx: typer.Context, site_id: str, keyword: KeywordIds) -> None:
    """Disable keywords: never clustered, and out of their cluster."""
    with client_for(ctx) as client:
        out = client.set_keywords_enabled(site_id, keyword, False)
    console.print(f"{out['changed']} keywords disabled")


@content_app.command("enable")
def enable(ctx: typer.Context, site_id: str, keyword: KeywordIds) -> None:
    """Enable keywords again (pending for the next run's clustering)."""
    with client_for(ctx) as client:
        out = client.set_keywords_enabled(site_id, keyword, True)
    console.print(f"{out['changed']} keywords enabled")


def _clusters_changed(out: dict[str, Any]) -> None:
    for c in out["clusters"]:
        console.print(f"cluster {c['id']} {c['name']!r}: {c['size']} keywords")
    for removed in out.get("removed", []):
        console.print(f"cluster {removed} removed")


@content_app.command("rename")
def rename(ctx: typer.Context, site_id: str, cluster_id: int, name: str) -> None:
    """Rename a cluster (names are unique per site)."""
    with client_for(ctx) as client:
        _clusters_changed(client.rename_cluster(site_id, cluster_id, name))


@content_app.command("move")
def move(ctx: typer.Context, site_id: str, cluster_id: int, keyword: KeywordIds) -> None:
    """Move keywords into a cluster."""
    with client_for(ctx) as client:
        _clusters_changed(client.move_keywords(site_id, cluster_id, keyword))


@content_app.command("merge")
def merge(ctx: typer.Context, site_id: str, into_cluster_id: int, from_cluster_id: int) -> None:
    """Merge the second cluster into the first."""
    with client_for(ctx) as client:
        _clusters_changed(client.merge_clusters(site_id, into_cluster_id, from_cluster_id))


@content_app.command("split")
def split(
    ctx: typer.Context,
    site_id: str,
    cluster_id: int,
    keyword: KeywordIds,
    name: Annotated[str, typer.Option(help="The new cluster's name.")],
) -> None:
    """Move the chosen keywords of a cluster into a new cluster."""
    with client_for(ctx) as client:
        _clusters_changed(client.split_cluster(site_id, cluster_id, keyword, name))


@content_app.command("edit-draft")
def edit_draft(
    ctx: typer.Context,
    draft_id: int,
    title: Annotated[str | None, typer.Option(help="New title.")] = None,
    meta_title: Annotated[str | None, typer.Option(help="New meta title (≤ 60).")] = None,
    meta_description: Annotated[str | None, typer.Option(help="New meta description (≤ 160).")] = None,
    body: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Markdown file with the body.")] = None,
) -> None:
    """Edit a draft before the decision; every version is kept (version 1 is the model's original)."""
    changes = {"title": title, "meta_title": meta_title, "meta_description": meta_description}
    if body is not None:
        changes["body_markdown"] = body.read_text(encoding="utf-8")
    with client_for(ctx) as client:
        draft = client.edit_draft(draft_id, {k: v for k, v in changes.items() if v is not None})
    console.print(f"draft {draft_id}: {draft['title']!r}, {draft['word_count']} words")


@content_app.command("versions")
def versions(ctx: typer.Context, draft_id: int) -> None:
    """Every text a draft has had."""
    with client_for(ctx) as client:
        rows = client.draft_versions(draft_id)
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("version", "source", "title", "when"):
        table.add_column(column)
    for v in rows:
        table.add_row(str(v["version"]), v["source"], v["title"], str(v["created_at"]))
    console.print(table)


@content_app.command("restore")
def restore(ctx: typer.Context, draft_id: int, version: int) -> None:
    """Make an earlier version the draft's text again (1: the model's original)."""
    with client_for(ctx) as client:
        draft = client.restore_draft(draft_id, version)
    console.print(f"draft {draft_id} is version {version} again: {draft['title']!r}")


@content_app.command("regenerate")
def regenerate(ctx: typer.Context, draft_id: int) -> None:
    """Regenerate a rejected draft: a targeted run writes a new one (charged like any run)."""
    with client_for(ctx) as client:
        out = client.regenerate_draft(draft_id)
    console.print(f"draft {draft_id} superseded; run {out['run']['run_id']} writes task {out['task_id']}'s next draft")
