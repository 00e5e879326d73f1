"""`contentline`: drive the orchestrator's REST API from a terminal.

    export CONTENTLINE_API_KEY=cl_...           # or a config file, see contentline_cli/config.py
    contentline site create "My site" --domain example.com
    contentline keywords import SITE_ID keywords.csv
    contentline run start SITE_ID --follow
    contentline run show RUN_ID

The functions under "building blocks" are also used by `python -m devstack demo`.
Exit codes: 0 ok / run completed, 1 API error or run failed/cancelled, 2 follow timed out, 3 run paused.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from contentline_cli import config
from contentline_cli.accounts import account_app, keys_app, whoami
from contentline_cli.client import ApiError, ContentlineClient, ImportResult, RunInfo, Site, StageInfo
from contentline_cli.content import content_app
from contentline_cli.rules import rules_app
from contentline_cli.session import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_TIMEOUT,
    MAX_REJECTED_SHOWN,
    client_for,
    console,
    err_console,
)
from contentline_cli.webhooks import webhooks_app

# Stage numbers and labels as the API reports them (shared.contracts.Stage); kept here so the CLI
# needs nothing but the HTTP API.
STAGE_LABELS: dict[int, str] = {
    1: "keywords → clusters",
    2: "clusters → ideas",
    3: "ideas → tasks",
    4: "tasks → drafts",
    5: "drafts → image prompts",
    6: "prompts → images",
    7: "review gate",
}
WORK_STAGES = (1, 2, 3, 4, 5, 6)
REVIEW_STAGE = 7
# What each stage's `items_created` counts.
CREATED_NOUNS: dict[int, str] = {1: "clusters", 2: "ideas", 3: "tasks", 4: "drafts", 5: "image prompts", 6: "images"}



class FollowAbortedError(Exception):
    """The caller's watchdog reported a problem (e.g. a service process died); `run` is the last state seen."""

    def __init__(self, run: RunInfo | None, reason: str) -> None:
        super().__init__(reason)
        self.run = run
        self.reason = reason


class FollowTimeoutError(Exception):
    """The run was still running when `follow_run`'s timeout passed; `run` is the last state seen."""

    def __init__(self, run: RunInfo, timeout: float) -> None:
        super().__init__(f"run {run.run_id} still {run.status} after {timeout:.0f}s")
        self.run = run
        self.timeout = timeout


# ---------------------------------------------------------------------- pure helpers
def stage_label(number: int) -> str:
    return STAGE_LABELS.get(number, f"stage {number}")


def headline_counts(run: RunInfo) -> dict[str, int]:
    """Clusters, ideas, … from each stage's `items_created`; ready for review from stage 7's `items_processed`."""
    counts = dict.fromkeys(CREATED_NOUNS.values(), 0)
    for number, noun in CREATED_NOUNS.items():
        stage = run.stage(number)
        if stage is not None:
            counts[noun] = stage.items_created
    review = run.stage(REVIEW_STAGE)
    counts["ready for review"] = review.items_processed if review is not None else 0
    return counts


def exit_code_for(status: str) -> int:
    if status == "completed":
        return EXIT_OK
    if status == "paused":
        return EXIT_PAUSED
    return EXIT_FAILED


def stage_seconds(stage: StageInfo, now: datetime | None = None) -> float:
    """Final seconds once the stage is finished, time since it started while it runs."""
    if stage.started_at is None or stage.status == "skipped":
        return stage.seconds
    if stage.finished_at is not None:
        # A cancelled stage is closed without its seconds being recorded: take them from its timestamps.
        return stage.seconds or max(0.0, (stage.finished_at - stage.started_at).total_seconds())
    if stage.status != "running":
        return stage.seconds
    return max(0.0, ((now or datetime.now(UTC)) - stage.started_at).total_seconds())


def stage_notes(stage: StageInfo) -> str:
    notes = []
    if stage.partial:
        notes.append("partial")
    if stage.stopped_reason:
        notes.append(stage.stopped_reason)
    if stage.failures:
        reason = str(stage.failures[0].get("reason", ""))
        more = "…" if len(reason) > 100 else ""
        notes.append(f"{len(stage.failures)} failure(s) recorded, e.g. {reason[:100]}{more}")
    return "; ".join(notes)


def run_seconds(run: RunInfo) -> float | None:
    if run.started_at is None:
        return None
    end = run.completed_at or run.cancelled_at or datetime.now(UTC)
    return max(0.0, (end - run.started_at).total_seconds())


def _credits(value: Decimal) -> str:
    return f"{value:,.2f}"


# ---------------------------------------------------------------------- building blocks
def create_site(client: ContentlineClient, name: str, domain: str | None = None, out: Console = console) -> Site:
    site = client.create_site(name, domain)
    out.print(f"Created site [bold]{site.name}[/]{f' ({site.domain})' if site.domain else ''}: [cyan]{site.id}[/]")
    return site


def print_import_result(result: ImportResult, out: Console = console) -> None:
    out.print(
        f"Keywords: [bold]{result.received}[/] received, [green]{result.imported}[/] imported, "
        f"[yellow]{result.duplicates}[/] duplicates, [red]{len(result.rejected)}[/] rejected"
    )
    for row in result.rejected[:MAX_REJECTED_SHOWN]:
        out.print(f"  line {row.line if row.line is not None else '?'}: {row.reason}")
    if len(result.rejected) > MAX_REJECTED_SHOWN:
        out.print(f"  … and {len(result.rejected) - MAX_REJECTED_SHOWN} more rejected rows")


def import_keywords(client: ContentlineClient, site_id: str, path: Path, out: Console = console) -> ImportResult:
    result = client.import_keywords_file(site_id, path)
    print_import_result(result, out)
    return result


def start_run(client: ContentlineClient, site_id: str, out: Console = console) -> RunInfo:
    run = client.start_run(site_id)
    out.print(f"Started run [cyan]{run.run_id}[/] for site {site_id}")
    return run


class _CountColumn(ProgressColumn):
    """`done/total` once a stage has started, its state otherwise."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("active"):
            return Text("pending", style="dim")
        total = task.fields.get("items_in", 0)
        width = len(str(total))
        return Text(f"{task.completed:>{width}.0f}/{total}", style="progress.download")


class _TextLine:
    def __init__(self) -> None:
        self.text = Text("waiting for the run…")

    def __rich__(self) -> Text:
        return self.text


class RunProgress:
    """One progress bar per work stage (1-6) plus a line for the review gate, fed with `RunInfo` snapshots."""

    def __init__(self, out: Console = console) -> None:
        self.out = out
        self.header = _TextLine()
        self.review = _TextLine()
        self.review.text = Text(f"7 {stage_label(REVIEW_STAGE)}: waiting", style="dim")
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=max(10, min(32, out.width - 80))),
            _CountColumn(),
            TextColumn("{task.fields[note]}"),
            console=out,
            expand=False,
        )
        self.tasks: dict[int, TaskID] = {
            n: self.progress.add_task(f"{n} {stage_label(n):<22}", total=1, active=False, items_in=0, note="")
            for n in WORK_STAGES
        }
        self._last_status: dict[int, str] = {}

    def renderable(self) -> Group:
        return Group(self.header, self.progress, self.review)

    def update(self, run: RunInfo) -> None:
        now = datetime.now(UTC)
        elapsed = run_seconds(run)
        current = run.current_stage
        stage_text = f"stage {current} ({stage_label(current)})" if current else "starting"
        self.header.text = Text.assemble(
            ("Run ", ""), (run.run_id, "cyan"), (" · ", ""), (run.status, _status_style(run.status)),
            (f" · {stage_text}", ""),
            (f" · {elapsed:.0f}s" if elapsed is not None else "", ""),
            (f" · {_credits(run.total_credits_used)} credits", ""),
        )
        for number in WORK_STAGES:
            stage = run.stage(number)
            if stage is None:
                continue
            total = max(stage.items_in, 1)
            done = stage.items_done if stage.items_in else (total if stage.status != "running" else 0)
            self.progress.update(
                self.tasks[number], total=total, completed=min(done, total), active=True,
                items_in=stage.items_in, note=self._note(number, stage, now),
            )
            self._log_transition(number, stage)
        review = run.stage(REVIEW_STAGE)
        if review is not None:
            self.review.text = Text.assemble(
                (f"7 {stage_label(REVIEW_STAGE)}: ", "bold"),
                (f"{review.items_processed} drafts ready for review", "green"),
            )
            self._log_transition(REVIEW_STAGE, review)
        elif run.status != "running":
            self.review.text = Text(f"7 {stage_label(REVIEW_STAGE)}: not reached (run {run.status})", style="dim")

    @staticmethod
    def _note(number: int, stage: StageInfo, now: datetime) -> Text:
        secs = stage_seconds(stage, now)
        created = f"{stage.items_created} {CREATED_NOUNS[number]}"
        failed = f", {stage.items_failed} failed" if stage.items_failed else ""
        if stage.status == "running":
            paused = f" ({stage.stopped_reason})" if stage.stopped_reason else ""
            return Text(f"running {secs:.0f}s{paused} · {created}{failed}", style="yellow")
        if stage.status == "skipped":
            return Text("skipped (nothing pending)", style="dim")
        style = "red" if stage.status in {"stopped", "failed"} or stage.items_failed else "green"
        reason = f" ({stage.stopped_reason})" if stage.stopped_reason else ""
        return Text(f"{stage.status}{reason} in {secs:.1f}s · {created}{failed}", style=style)

    def _log_transition(self, number: int, stage: StageInfo) -> None:
        # On a terminal the bars say it all; in a log file (no live refresh) print one line per change.
        if self.out.is_terminal or self._last_status.get(number) == stage.status:
            return
        self._last_status[number] = stage.status
        self.out.print(f"stage {number} ({stage_label(number)}): {stage.status}"
                       f" — {stage.items_done}/{stage.items_in} done, {stage.items_created} created")


def _status_style(status: str) -> str:
    return {"completed": "bold green", "running": "bold yellow", "paused": "bold blue"}.get(status, "bold red")


def follow_run(
    client: ContentlineClient, run_id: str, out: Console = console, timeout: float = 600.0, interval: float = 0.5,
    watchdog: Callable[[], str | None] | None = None,
) -> RunInfo:
    """Poll the run and draw the stage bars until it stops running. Raises FollowTimeoutError after `timeout`,
    FollowAbortedError when `watchdog` (called every poll) returns a reason to give up."""
    view = RunProgress(out)
    deadline = time.monotonic() + timeout
    unreachable_since: float | None = None
    run: RunInfo | None = None
    with contextlib.ExitStack() as stack:
        # Rich ends a live display with a newline only on terminals; keep logs and pipes tidy too.
        stack.callback(lambda: None if out.is_terminal else out.line())
        stack.enter_context(Live(view.renderable(), console=out, refresh_per_second=8, transient=False))
        while True:
            try:
                run = client.get_run(run_id)
                unreachable_since = None
            except ApiError as exc:
                # A blip (API restarting) is tolerated for a few seconds; a 4xx or a lasting outage is not.
                if exc.status != 0 or run is None:
                    raise
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > 10:
                    raise
            else:
                view.update(run)
                if run.status != "running":
                    return run
            if watchdog is not None and (problem := watchdog()):
                raise FollowAbortedError(run, problem)
            if time.monotonic() > deadline:
                assert run is not None
                raise FollowTimeoutError(run, timeout)
            time.sleep(interval)


def print_summary(run: RunInfo, out: Console = console) -> None:
    table = Table(title=f"Run {run.run_id} — {run.status}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    table.add_column("#", justify="right")
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    narrow = out.width < 100
    headers = ("in", "done", "new", "skip", "fail", "credits", "secs") if narrow else (
        "in", "processed", "created", "skipped", "failed", "credits", "seconds")
    for name in headers:
        table.add_column(name, justify="right", no_wrap=True)
    notes: list[str] = []
    for stage in sorted(run.stages, key=lambda s: s.stage):
        note = stage_notes(stage)
        if note:
            notes.append(f"stage {stage.stage}: {note}")
        table.add_row(
            str(stage.stage), stage.label or stage_label(stage.stage),
            Text(stage.status + (" *" if note else ""),
                 style=_status_style(stage.status) if stage.status != "skipped" else "dim"),
            str(stage.items_in), str(stage.items_processed), str(stage.items_created), str(stage.items_skipped),
            Text(str(stage.items_failed), style="red" if stage.items_failed else ""),
            _credits(stage.credits), f"{stage_seconds(stage):.1f}",
        )
    out.print(table)
    for note in notes:
        out.print(f"  * {note}", style="yellow")

    counts = headline_counts(run)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column(justify="right")
    for name, value in counts.items():
        grid.add_row(name, str(value))
    grid.add_row("credits", _credits(run.total_credits_used))
    elapsed = run_seconds(run)
    if elapsed is not None:
        grid.add_row("run time", f"{elapsed:.1f}s")
    out.print(grid)
    if run.stopped_reason:
        out.print(f"[yellow]stopped: {run.stopped_reason}[/]")
    if run.error_message:
        out.print(f"[red]error: {run.error_message}[/]")


def follow_and_summarise(
    client: ContentlineClient, run_id: str, out: Console = console, timeout: float = 600.0, interval: float = 0.5,
    watchdog: Callable[[], str | None] | None = None,
) -> int:
    """follow_run + print_summary; returns the exit code (0 completed, 1 failed/cancelled, 2 timeout, 3 paused)."""
    try:
        run = follow_run(client, run_id, out, timeout, interval, watchdog)
    except FollowAbortedError as exc:
        if exc.run is not None:
            print_summary(exc.run, out)
        err_console.print(f"[bold red]Stopped following run {run_id}:[/] {exc.reason}")
        return EXIT_FAILED
    except FollowTimeoutError as exc:
        print_summary(exc.run, out)
        err_console.print(
            f"[yellow]Timed out after {exc.timeout:.0f}s: run {run_id} is still {exc.run.status}. "
            f"It keeps going; follow it again with `contentline run follow {run_id}`.[/]"
        )
        return EXIT_TIMEOUT
    print_summary(run, out)
    code = exit_code_for(run.status)
    if run.status == "paused":
        err_console.print(f"[blue]Run is paused; resume it with `contentline run resume {run_id}`.[/]")
    elif code != EXIT_OK:
        err_console.print(f"[red]Run {run_id} ended {run.status}.[/]")
    return code


# ---------------------------------------------------------------------- the typer app
app = typer.Typer(no_args_is_help=True, add_completion=False, help="Keywords in, reviewed article drafts out.",
                  pretty_exceptions_show_locals=False)
site_app = typer.Typer(no_args_is_help=True, help="Sites (the unit keywords and runs belong to).")
keywords_app = typer.Typer(no_args_is_help=True, help="Keyword imports.")
run_app = typer.Typer(no_args_is_help=True, help="Pipeline runs: start, follow, inspect, pause/resume/cancel.")
app.add_typer(site_app, name="site")
app.add_typer(keywords_app, name="keywords")
app.add_typer(run_app, name="run")

ApiOption = Annotated[str | None, typer.Option(
    "--api", help="Orchestrator base URL (else CONTENTLINE_API_URL, the config file, a local stack, or "
                  f"{config.DEFAULT_API_URL}).")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Stop following after this many seconds.")]
IntervalOption = Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")]


@app.callback()
def _root(ctx: typer.Context, api: ApiOption = None) -> None:
    ctx.obj = api


@site_app.command("create")
def site_create(
    ctx: typer.Context, name: str,
    domain: Annotated[str | None, typer.Option(help="The site's domain, e.g. example.com.")] = None,
) -> None:
    """Create a site; prints its id on stdout."""
    with client_for(ctx) as client:
        site = create_site(client, name, domain, out=err_console)
    print(site.id)


@site_app.command("show")
def site_show(ctx: typer.Context, site_id: str) -> None:
    """Show a site and its current run, if any."""
    with client_for(ctx) as client:
        site = client.get_site(site_id)
        current = client.current_run(site_id)
    console.print(f"[bold]{site.name}[/] {site.domain or ''}  id [cyan]{site.id}[/]  account {site.account_id}")
    console.print(f"current run: {current.run_id} ({current.status})" if current else "no active run")


@keywords_app.command("import")
def keywords_import(
    ctx: typer.Context, site_id: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="CSV/TSV planner export, or .json")],
) -> None:
    """Import keywords from a CSV export (Keyword,Volume,…) or a JSON file ({"keywords": [...]} or a list)."""
    with client_for(ctx) as client:
        import_keywords(client, site_id, file)


@run_app.command("start")
def run_start(
    ctx: typer.Context, site_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow the run until it ends.")] = False,
    timeout: TimeoutOption = 600.0, interval: IntervalOption = 0.5,
) -> None:
    """Start a run over everything pending for the site; prints the run id."""
    with client_for(ctx) as client:
        run = start_run(client, site_id, out=err_console)
        if not follow:
            print(run.run_id)
            return
        code = follow_and_summarise(client, run.run_id, timeout=timeout, interval=interval)
    raise typer.Exit(code)


@run_app.command("follow")
def run_follow(ctx: typer.Context, run_id: str, timeout: TimeoutOption = 600.0,
               interval: IntervalOption = 0.5) -> None:
    """Show live per-stage progress until the run stops running, then the summary."""
    with client_for(ctx) as client:
        code = follow_and_summarise(client, run_id, timeout=timeout, interval=interval)
    raise typer.Exit(code)


@run_app.command("show")
def run_show(ctx: typer.Context, run_id: str) -> None:
    """Print the run's per-stage results and headline counts."""
    with client_for(ctx) as client:
        run = client.get_run(run_id)
    print_summary(run)


def _transition(ctx: typer.Context, run_id: str, verb: str) -> None:
    with client_for(ctx) as client:
        action = {"pause": client.pause_run, "resume": client.resume_run, "cancel": client.cancel_run}[verb]
        run = action(run_id)
    console.print(f"run [cyan]{run.run_id}[/] is now [{_status_style(run.status)}]{run.status}[/]")


@run_app.command("pause")
def run_pause(ctx: typer.Context, run_id: str) -> None:
    """Pause a running run (in-flight batches finish; nothing new is released)."""
    _transition(ctx, run_id, "pause")


@run_app.command("resume")
def run_resume(ctx: typer.Context, run_id: str) -> None:
    """Resume a paused run."""
    _transition(ctx, run_id, "resume")


@run_app.command("cancel")
def run_cancel(ctx: typer.Context, run_id: str) -> None:
    """Cancel a running or paused run."""
    _transition(ctx, run_id, "cancel")


@run_app.command("activity")
def run_activity(ctx: typer.Context, run_id: str,
                 limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest entries to show.")] = 30) -> None:
    """The run's activity log (stage transitions, failures, warnings)."""
    with client_for(ctx) as client:
        entries = client.activity(run_id, limit)
    for entry in entries:
        style = {"warning": "yellow", "error": "red"}.get(entry.level, "")
        stage = f"[{entry.stage}] " if entry.stage else ""
        console.print(f"{entry.at:%H:%M:%S} {stage}{entry.message}", style=style)


def main() -> None:
    app(prog_name="contentline")


app.add_typer(account_app, name="account")
app.add_typer(keys_app, name="keys")
app.add_typer(content_app, name="content")
app.add_typer(rules_app, name="rules")
app.add_typer(webhooks_app, name="webhooks")
app.command("whoami")(whoami)
