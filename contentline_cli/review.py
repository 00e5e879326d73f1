"""`contentline review ...` and `contentline export ...`: the review queue, a draft, approve / reject, publish;
a draft or a site's approved drafts as a zip (Markdown + HTML + images + index)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markdown import Markdown

from contentline_cli.session import JsonOption, client_for, console, err_console, fields, print_json, table

review_app = typer.Typer(no_args_is_help=True, help="The review gate: queue, show, approve, reject, publish.")
export_app = typer.Typer(no_args_is_help=True, help="Drafts as a zip of Markdown + HTML + images (no WordPress).")

NoteOption = Annotated[str, typer.Option("--note", "-n", help="Why (stored with the decision).")]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # model text must not drive the terminal


def _plain(text: str) -> str:
    return _CONTROL.sub("", text)


@review_app.command("queue")
def review_queue(
    ctx: typer.Context, site_id: str, limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Drafts with all their images, waiting for a decision (low quality scores flagged), oldest first."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/review-queue", params={"limit": limit})
    if as_json:
        print_json(data)
        return
    rows = [{**d, "quality": f"{d['quality_score']}{' LOW' if d['low_quality'] else ''}",
             "words": f"{d['word_count']}/{d['target_words']}", "imgs": f"{d['images']}/{d['image_prompts']}",
             "title": _plain(d["title"])} for d in data]  # fmt: skip
    table(rows, [("draft_id", "draft"), "title", "words", "quality", ("imgs", "images"), "created_at"],
          title=f"Review queue of site {site_id}", empty="nothing waits for review")


@review_app.command("show")
def review_show(
    ctx: typer.Context, draft_id: int,
    body: Annotated[bool, typer.Option("--body", help="Also print the article (Markdown, rendered).")] = False,
    as_json: JsonOption = False,
) -> None:
    """A draft: title, meta, quality and its notes, decision, images (and with --body the article)."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/drafts/{draft_id}")
    if as_json:
        print_json(data)
        return
    shown = {k: _plain(v) if isinstance(v, str) else v for k, v in data.items()}
    fields(shown, ["draft_id", "site_id", "run_id", "title", "slug", "meta_title", "meta_description", "word_count",
                   "target_words", "quality_score", "decision", "note"])  # fmt: skip
    for note in data["quality_notes"]:
        console.print(f"  quality: {_plain(note)}", style="yellow", markup=False)
    table([{**i, "alt_text": _plain(i["alt_text"])} for i in data["images"]],
          ["placement", "alt_text", "width", "height", "path"], title="Images", empty="no images")
    if body:
        console.print(Markdown(_plain(data["body_markdown"])))


def _decide(ctx: typer.Context, draft_id: int, decision: str, note: str, as_json: bool) -> None:
    with client_for(ctx) as client:
        data = client.call("POST", f"/drafts/{draft_id}/review", json={"decision": decision, "note": note})
    if as_json:
        print_json(data)
    else:
        console.print(f"draft {draft_id} {data['decision']}: {_plain(data['title'])}", markup=False)


@review_app.command("approve")
def review_approve(ctx: typer.Context, draft_id: int, note: NoteOption = "", as_json: JsonOption = False) -> None:
    """Approve a draft (once; a second decision is a conflict, exit 4)."""
    _decide(ctx, draft_id, "approved", note, as_json)


@review_app.command("reject")
def review_reject(ctx: typer.Context, draft_id: int, note: NoteOption = "", as_json: JsonOption = False) -> None:
    """Reject a draft, with a note saying why."""
    _decide(ctx, draft_id, "rejected", note, as_json)


@review_app.command("publish")
def review_publish(ctx: typer.Context, draft_id: int, as_json: JsonOption = False) -> None:
    """Publish an approved draft (the API announces it to the publishing side)."""
    with client_for(ctx) as client:
        data = client.call("POST", f"/drafts/{draft_id}/publish")
    if as_json:
        print_json(data)
    else:
        console.print(f"draft {draft_id} {data['decision']}: {_plain(data['title'])}", markup=False)


# ---------------------------------------------------------------------- export
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="The zip file to write (default: the "
                                                                          "name the API suggests, here).")]


def _export(ctx: typer.Context, path: str, output: Path | None, as_json: bool) -> None:
    with client_for(ctx) as client:
        partial = (output or Path("contentline-export.zip")).with_suffix(".part")
        try:
            with partial.open("wb") as target:
                written, suggested = client.download(path, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        target_path = output or Path(Path(suggested).name or "contentline-export.zip")
        partial.replace(target_path)  # a broken download never leaves a file that looks complete
        index = _index(target_path)
    drafts = [d for d in index.get("drafts", []) if "skipped" not in d]
    missing = sum(int(d.get("missing_images", 0)) for d in drafts)
    if as_json:
        print_json({"file": str(target_path), "bytes": written, "index": index})
        return
    err_console.print(f"wrote {target_path} ({written:,} bytes): {len(drafts)} draft(s), "
                      f"{sum(int(d.get('images', 0)) for d in drafts)} image(s)"
                      + (f", {missing} image(s) missing (see index.json)" if missing else ""))


def _index(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        name = next((n for n in archive.namelist() if n.endswith("/index.json")), None)
        return dict(json.loads(archive.read(name))) if name else {}


@export_app.command("draft")
def export_draft(ctx: typer.Context, draft_id: int, output: OutputOption = None, as_json: JsonOption = False) -> None:
    """One draft (any review state): article.md, article.html, its images, index.json and index.csv."""
    _export(ctx, f"/drafts/{draft_id}/export.zip", output, as_json)


@export_app.command("site")
def export_site(ctx: typer.Context, site_id: str, output: OutputOption = None, as_json: JsonOption = False) -> None:
    """Every approved (or since published) draft of a site, a folder each, with an index."""
    _export(ctx, f"/sites/{site_id}/export.zip", output, as_json)
