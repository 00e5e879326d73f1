"""`contentline publishing ...`: a site's publishing settings, its publishing queue, a person's schedule actions
(schedule or move, unschedule, publish now) and the site's WordPress connection.

    contentline publishing settings SITE
    contentline publishing set SITE --auto-approval --mode immediate
    contentline publishing queue SITE [--state unscheduled]
    contentline publishing schedule DRAFT [--at 2026-12-24T09:00:00+01:00] | unschedule DRAFT | publish-now DRAFT
    contentline publishing wordpress connect SITE --url https://blog.example.com --user editor [--password-file F]
    contentline publishing wordpress show|test|disconnect SITE

The application password is never a command-line argument (other users could read it in the process list):
it comes from --password-file, from standard input, or from a hidden prompt; or only a reference to it is
stored (--password-ref env:NAME or file:/path).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from contentline_cli.client import ApiError, ContentlineClient, DraftPublishingInfo, PublishingInfo, QueueEntryInfo
from contentline_cli.session import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, client_for, console, err_console

publishing_app = typer.Typer(no_args_is_help=True, help="Publishing: settings, the queue, schedule actions, WordPress.")
wordpress_app = typer.Typer(no_args_is_help=True, help="A site's WordPress connection (the password is never shown).")
publishing_app.add_typer(wordpress_app, name="wordpress")

MODES = ("time_slots", "stagger", "immediate")


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def describe(p: PublishingInfo) -> str:
    """One line for a draft's place in the schedule."""
    if p.state == "scheduled" and p.scheduled_publish_at:
        return f"scheduled for {p.scheduled_publish_at.isoformat()} ({p.scheduled_by})"
    if p.state == "published":
        return f"published: {p.url or '?'} (WordPress status {p.remote_status or '?'})"
    if p.state == "publishing":
        return f"with the publisher (attempt {p.attempts})"
    retry = f"; next try {p.next_try_at.isoformat()}" if p.next_try_at else ""
    return f"{p.state}: {p.reason or 'no reason recorded'}{retry}"


def _print_action(answer: DraftPublishingInfo) -> None:
    console.print(f"draft {answer.draft_id}: {describe(answer.publishing)}")


# ---------------------------------------------------------------------- building blocks (also for the demo)
def publish_automatically(
    client: ContentlineClient, site_id: str, *, url: str, user: str, password: str, approvals_per_run: int = 0,
    out: Console = console,
) -> None:
    """Connect the site's WordPress (checked), auto-approve what passes the quality check (at most
    `approvals_per_run` per run, 0 = all) and publish every approved draft at once (`immediate`)."""
    client.connect_wordpress(site_id, {"base_url": url, "username": user, "app_password": password})
    check = client.test_wordpress(site_id)
    if not check.ok:
        raise ApiError(0, f"WordPress at {url}: {check.problem}")
    client.update_publishing_settings(site_id, {"auto_approval_enabled": True, "scheduling_mode": "immediate"})
    client.patch_site_config(site_id, {"limits": {"max_approvals_per_run": approvals_per_run}})
    limit = f"at most {approvals_per_run} per run" if approvals_per_run else "all that pass"
    out.print(f"[bold]Publishing:[/] {url} ({check.site_name or 'WordPress'}, user {check.user}); auto-approval "
              f"({limit}), immediate publishing")  # fmt: skip


def follow_publishing(
    client: ContentlineClient, site_id: str, *, timeout: float = 300.0, interval: float = 1.0,
    watchdog: Callable[[], str | None] | None = None, out: Console = console,
) -> int:
    """Wait until no draft of the site is scheduled or with the publisher, then say what came of them; exit
    code 0 when at least one was published and none failed."""
    deadline = time.monotonic() + timeout
    with out.status("Publishing to WordPress…") as spinner:
        while True:
            entries = client.publishing_queue(site_id, limit=1000)
            busy = [e for e in entries if e.state in {"scheduled", "publishing"}]
            done = sum(e.state == "published" for e in entries)
            spinner.update(f"Publishing to WordPress… {done} published, {len(busy)} to go")
            if not busy:
                break
            if watchdog is not None and (problem := watchdog()):
                err_console.print(f"[bold red]Publishing stopped:[/] {problem}")
                return EXIT_FAILED
            if time.monotonic() > deadline:
                err_console.print(f"[yellow]{len(busy)} drafts still to publish after {timeout:.0f}s[/]")
                return EXIT_TIMEOUT
            time.sleep(interval)
    return print_publishing_summary(entries, out)


def print_publishing_summary(entries: list[QueueEntryInfo], out: Console = console) -> int:
    published = [e for e in entries if e.state == "published"]
    failed = [e for e in entries if e.state == "failed"]
    waiting = [e for e in entries if e.state == "unscheduled"]
    out.print(f"[bold]Published:[/] {len(published)} drafts on WordPress, {len(failed)} failed, "
              f"{len(waiting)} without a slot")  # fmt: skip
    for e in [*failed, *waiting][:5]:
        out.print(f"  draft {e.draft_id}: {describe(e)}")
    if published:
        out.print(f"[bold]One of the posts:[/] {published[0].url}")
    return EXIT_OK if published and not failed else EXIT_FAILED


@publishing_app.command("settings")
def settings_show(ctx: typer.Context, site_id: str) -> None:
    """Show the site's publishing settings (times are wall-clock times in the site's time zone)."""
    with client_for(ctx) as client:
        info = client.publishing_settings(site_id)
    table = Table(box=box.SIMPLE, title=f"publishing settings of {site_id} (time zone {info.timezone})",
                  title_justify="left")  # fmt: skip
    table.add_column("setting")
    table.add_column("value")
    for name, value in info.settings.items():
        table.add_row(name, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    table.add_row("(drafts scheduled now)", str(info.queued))
    console.print(table)


@publishing_app.command("set")
def settings_set(
    ctx: typer.Context,
    site_id: str,
    auto_approval: Annotated[bool | None, typer.Option("--auto-approval/--no-auto-approval")] = None,
    auto_publish: Annotated[bool | None, typer.Option("--auto-publish/--no-auto-publish")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help=f"one of {', '.join(MODES)}")] = None,
    days: Annotated[str | None, typer.Option("--days", help="e.g. mon,tue,wed,thu,fri (empty: none)")] = None,
    slots: Annotated[str | None, typer.Option("--slots", help="time_slots: e.g. 09:00,14:00,18:00")] = None,
    stagger_start: Annotated[str | None, typer.Option("--stagger-start", help="HH:MM")] = None,
    stagger_end: Annotated[str | None, typer.Option("--stagger-end", help="HH:MM")] = None,
    stagger_interval: Annotated[int | None, typer.Option("--stagger-interval", help="minutes")] = None,
    daily_target: Annotated[int | None, typer.Option("--daily-target")] = None,
    weekly_target: Annotated[int | None, typer.Option("--weekly-target")] = None,
    monthly_target: Annotated[int | None, typer.Option("--monthly-target")] = None,
    max_queue: Annotated[int | None, typer.Option("--max-queue", help="the hard limit on scheduled drafts")] = None,
) -> None:
    """Change some publishing settings; the API checks them (a bad value is named with the reason)."""
    patch: dict[str, Any] = {
        "auto_approval_enabled": auto_approval,
        "auto_publish_enabled": auto_publish,
        "scheduling_mode": mode,
        "publish_days": _csv(days),
        "publish_time_slots": _csv(slots),
        "stagger_start_time": stagger_start,
        "stagger_end_time": stagger_end,
        "stagger_interval_minutes": stagger_interval,
        "daily_publish_target": daily_target,
        "weekly_publish_target": weekly_target,
        "monthly_publish_target": monthly_target,
        "max_scheduled_queue": max_queue,
    }
    patch = {k: v for k, v in patch.items() if v is not None}
    if not patch:
        err_console.print("nothing to change: give at least one option (see --help)")
        raise typer.Exit(2)
    with client_for(ctx) as client:
        client.update_publishing_settings(site_id, patch)
    console.print(f"publishing settings of {site_id} updated: {', '.join(sorted(patch))}")


@publishing_app.command("queue")
def queue(
    ctx: typer.Context,
    site_id: str,
    state: Annotated[list[str] | None, typer.Option("--state", help="only this state (repeatable)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """The site's drafts in the publishing schedule, by slot; those without one last, with the reason."""
    with client_for(ctx) as client:
        entries = client.publishing_queue(site_id, state or [], limit)
    if not entries:
        console.print("the publishing queue is empty")
        return
    table = Table(box=box.SIMPLE)
    for column in ("draft", "title", "state", "when / why"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.draft_id), e.title[:60], e.state, describe(e).split(": ", 1)[-1])
    console.print(table)


@publishing_app.command("schedule")
def schedule(
    ctx: typer.Context,
    draft_id: int,
    at: Annotated[datetime | None, typer.Option("--at", formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
                                                help="when, with its UTC offset (default: the next free slot)")] = None,
) -> None:
    """Schedule an approved draft, or move a scheduled one."""
    with client_for(ctx) as client:
        _print_action(client.schedule_draft(draft_id, at))


@publishing_app.command("unschedule")
def unschedule(ctx: typer.Context, draft_id: int) -> None:
    """Take a draft out of the schedule; it waits until a person acts."""
    with client_for(ctx) as client:
        _print_action(client.unschedule_draft(draft_id))


@publishing_app.command("publish-now")
def publish_now(ctx: typer.Context, draft_id: int) -> None:
    """Hand an approved draft to the publisher now (also again after a failure)."""
    with client_for(ctx) as client:
        _print_action(client.publish_now(draft_id))


@publishing_app.command("status")
def status(ctx: typer.Context, draft_id: int) -> None:
    """Where a draft stands in publishing."""
    with client_for(ctx) as client:
        info = client.draft_publishing(draft_id)
    console.print(f"draft {draft_id}: {describe(info) if info else 'not in the publishing schedule'}")


# ---------------------------------------------------------------------- WordPress
def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        return password_file.read_text().strip()
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return str(typer.prompt("WordPress application password", hide_input=True)).strip()


@wordpress_app.command("connect")
def wordpress_connect(
    ctx: typer.Context,
    site_id: str,
    url: Annotated[str, typer.Option("--url", help="the WordPress site's address")],
    user: Annotated[str, typer.Option("--user", help="a user who may publish posts and upload media")],
    password_file: Annotated[Path | None, typer.Option("--password-file", exists=True, dir_okay=False,
                                                       help="a file holding the application password")] = None,
    password_ref: Annotated[str | None, typer.Option("--password-ref",
                                                     help="store only a reference: env:NAME or file:/path")] = None,
    post_status: Annotated[str, typer.Option("--post-status", help="publish, draft, pending or private")] = "publish",
    categories: Annotated[str | None, typer.Option("--categories", help="categories for every post, comma-separated")]
    = None,
    test: Annotated[bool, typer.Option("--test/--no-test", help="try the connection right away")] = True,
) -> None:
    """Create or replace the site's WordPress connection (the password is stored encrypted)."""
    body: dict[str, Any] = {"base_url": url, "username": user, "default_post_status": post_status}
    if password_ref:
        body["app_password_ref"] = password_ref
    else:
        body["app_password"] = _read_password(password_file)
    if categories:
        body["category_mapping"] = {"default": _csv(categories)}
    with client_for(ctx) as client:
        conn = client.connect_wordpress(site_id, body)
        console.print(f"site {site_id} connected to {conn.base_url} as {conn.username} (password {conn.password})")
        if test:
            _print_test(client.test_wordpress(site_id))


def _print_test(check: Any) -> None:
    if check.ok:
        console.print(f"[green]connection ok[/]: {check.site_name or 'WordPress'} as {check.user} "
                      f"({', '.join(check.roles) or 'no role'})")  # fmt: skip
    else:
        err_console.print(f"[bold red]connection problem:[/] {check.problem}")
    for note in check.notes:
        console.print(f"  note: {note}")
    if not check.ok:
        raise typer.Exit(1)


@wordpress_app.command("show")
def wordpress_show(ctx: typer.Context, site_id: str) -> None:
    """The site's connection (never the password)."""
    with client_for(ctx) as client:
        conn = client.wordpress_connection(site_id)
    if conn is None:
        console.print(f"site {site_id} has no WordPress connection")
        return
    ref = f" ({conn.app_password_ref})" if conn.app_password_ref else ""
    console.print(f"{conn.base_url} as {conn.username}; password {conn.password}{ref}; "
                  f"posts as {conn.default_post_status}")  # fmt: skip
    console.print(f"categories {conn.category_mapping or '{}'}; tags {conn.tag_mapping or '{}'}")


@wordpress_app.command("test")
def wordpress_test(ctx: typer.Context, site_id: str) -> None:
    """Check the stored connection against the site: what is wrong, in one line (exit 1), or ok."""
    with client_for(ctx) as client:
        _print_test(client.test_wordpress(site_id))


@wordpress_app.command("disconnect")
def wordpress_disconnect(ctx: typer.Context, site_id: str) -> None:
    """Remove the site's WordPress connection."""
    with client_for(ctx) as client:
        client.disconnect_wordpress(site_id)
    console.print(f"site {site_id} has no WordPress connection now")
