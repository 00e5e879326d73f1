"""Following a run in a terminal: one progress bar per work stage, the review gate's line, and the summary
table at the end; also the building blocks `python -m devstack demo` uses (create a site, import, start, follow).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from contentline_cli.client import ApiError, ContentlineClient, ImportResult, RunInfo, Site, StageInfo
from contentline_cli.session import (
    EXIT_FAILED,
    EXIT_NO_OUTPUT,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_TIMEOUT,
    MAX_REJECTED_SHOWN,
    console,
    err_console,
)

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


def exit_code_for(status: str, stopped_reason: str | None = None) -> int:
    if status == "completed":
        # Completed with nothing out (every item failed, reasons in error_message): not a success to a script.
        return EXIT_NO_OUTPUT if stopped_reason == "no_output" else EXIT_OK
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
        # The bar of an empty stage is full (total 1, done 1); its count says 0/0, not "1/0".
        return Text(f"{min(task.completed, total):>{width}.0f}/{total}", style="progress.download")


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
            ("Run ", ""), (run.run_id, "cyan"), (" · ", ""), (run.status, status_style(run.status)),
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


def status_style(status: str) -> str:
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
                 style=status_style(stage.status) if stage.status != "skipped" else "dim"),
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
    start, revised = run.estimates()
    if start is not None:
        out.print(f"Estimate: {_credits(start)} credits at the start" + (
            f", {_credits(revised)} after clustering" if revised is not None else ""))  # fmt: skip
    if run.stopped_reason:
        out.print(f"[yellow]stopped: {run.stopped_reason}[/]")
    if run.error_message:
        out.print(f"[red]error: {run.error_message}[/]")


def follow_and_summarise(
    client: ContentlineClient, run_id: str, out: Console = console, timeout: float = 600.0, interval: float = 0.5,
    watchdog: Callable[[], str | None] | None = None,
) -> int:
    """follow_run + print_summary; returns the exit code (0 completed, 1 failed/cancelled, 9 paused, 10 timeout)."""
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
    code = exit_code_for(run.status, run.stopped_reason)
    if code == EXIT_NO_OUTPUT:
        err_console.print(f"[yellow]Run {run_id} completed with no output: {run.error_message}[/]")
    elif run.status == "paused":
        err_console.print(f"[blue]Run is paused; resume it with `contentline run resume {run_id}`.[/]")
    elif code != EXIT_OK:
        err_console.print(f"[red]Run {run_id} ended {run.status}.[/]")
    return code
