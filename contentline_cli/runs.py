"""`contentline run ...` and `contentline estimate`: start (refused with the reason when nothing is pending),
follow, show, current, history, processing, pause/resume/cancel, activity."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from contentline_cli.client import RunInfo
from contentline_cli.follow import follow_and_summarise, print_summary, start_run, status_style
from contentline_cli.session import JsonOption, client_for, console, err_console, print_json, table

run_app = typer.Typer(no_args_is_help=True, help="Pipeline runs: start, follow, inspect, pause/resume/cancel.")

TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Stop following after this many seconds.")]
IntervalOption = Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")]


def estimate(ctx: typer.Context, site_id: str, as_json: JsonOption = False) -> None:
    """Credits a run would need now, per stage, against what the account has available."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/estimate")
    if as_json:
        print_json(data)
        return
    table(data["stages"], ["stage", "items", "credits"], title=f"Estimate for site {site_id}")
    verdict = "[green]enough[/]" if data["sufficient"] else "[red]not enough[/]"
    console.print(f"total {data['total']} credits; starting needs {data['required']} (1.2 × total); "
                  f"available {data['available']} of balance {data['balance']}: {verdict}")


@run_app.command("start")
def run_start(
    ctx: typer.Context, site_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow the run until it ends.")] = False,
    timeout: TimeoutOption = 600.0, interval: IntervalOption = 0.5, as_json: JsonOption = False,
) -> None:
    """Start a run over everything pending for the site; prints the run id. Refused (exit 4) when nothing is
    pending or a run is active, 5 when credits are short."""
    with client_for(ctx) as client:
        if as_json and not follow:
            print_json(client.call("POST", f"/sites/{site_id}/runs"))
            return
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
def run_show(ctx: typer.Context, run_id: str, as_json: JsonOption = False) -> None:
    """The run's per-stage results and headline counts."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/runs/{run_id}")
    if as_json:
        print_json(data)
    else:
        print_summary(RunInfo.model_validate(data))


@run_app.command("current")
def run_current(ctx: typer.Context, site_id: str, as_json: JsonOption = False) -> None:
    """The site's running or paused run, if any."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/runs/current")
    if as_json:
        print_json(data)
    elif data is None:
        console.print("no active run")
    else:
        print_summary(RunInfo.model_validate(data))


@run_app.command("history")
def run_history(
    ctx: typer.Context, site_id: str, page: Annotated[int, typer.Option(min=1)] = 1,
    size: Annotated[int, typer.Option(min=1, max=100)] = 20, as_json: JsonOption = False,
) -> None:
    """The site's runs, newest first."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/runs", params={"page": page, "size": size})
    if as_json:
        print_json(data)
        return
    rows = [{**r, "stage": f"{r['current_stage']}/7", "done": f"{r['progress']['items_done']}/"
             f"{r['progress']['items_total']}"} for r in data["runs"]]  # fmt: skip
    table(rows, ["run_id", "trigger", "status", "stage", "done", ("total_credits_used", "credits"), "started_at",
                 "stopped_reason", "error_message"],
          title=f"Runs of site {site_id} (page {data['page']}, {data['total']} in all)", empty="no runs yet")


@run_app.command("processing")
def run_processing(ctx: typer.Context, site_id: str, as_json: JsonOption = False) -> None:
    """Batches workers hold right now, with their items."""
    with client_for(ctx) as client:
        data = client.call("GET", f"/sites/{site_id}/processing")
    if as_json:
        print_json(data)
        return
    rows = [{**b, "items": [i["title"] for i in b["items"]]} for b in data["batches"]]
    table(rows, ["stage", "seq", "command_id", "released_at", "items"],
          title=f"In flight for run {data.get('run_id') or '-'} ({data.get('status') or 'no active run'})",
          empty="no batch in flight")


def _transition(ctx: typer.Context, run_id: str, verb: str, as_json: bool) -> None:
    with client_for(ctx) as client:
        data = client.call("POST", f"/runs/{run_id}/{verb}")
    if as_json:
        print_json(data)
    else:
        console.print(f"run [cyan]{data['run_id']}[/] is now [{status_style(data['status'])}]{data['status']}[/]")


@run_app.command("pause")
def run_pause(ctx: typer.Context, run_id: str, as_json: JsonOption = False) -> None:
    """Pause a running run (in-flight batches finish; nothing new is released)."""
    _transition(ctx, run_id, "pause", as_json)


@run_app.command("resume")
def run_resume(ctx: typer.Context, run_id: str, as_json: JsonOption = False) -> None:
    """Resume a paused run."""
    _transition(ctx, run_id, "resume", as_json)


@run_app.command("cancel")
def run_cancel(ctx: typer.Context, run_id: str, as_json: JsonOption = False) -> None:
    """Cancel a running or paused run."""
    _transition(ctx, run_id, "cancel", as_json)


@run_app.command("activity")
def run_activity(
    ctx: typer.Context, run_id: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest entries to show.")] = 30,
    stage: Annotated[int | None, typer.Option(min=1, max=7, help="Only this stage's entries.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The run's activity log (stage transitions, failures, warnings)."""
    params: dict[str, Any] = {"limit": limit} | ({"stage": stage} if stage else {})
    with client_for(ctx) as client:
        entries = client.call("GET", f"/runs/{run_id}/activity", params=params)
    if as_json:
        print_json(entries)
        return
    for entry in entries:
        style = {"warning": "yellow", "error": "red"}.get(entry["level"], "")
        prefix = f"[{entry['stage']}] " if entry["stage"] else ""
        console.print(f"{entry['at'][11:19]} {prefix}{entry['message']}", style=style, markup=False)
    if not entries:
        console.print("[dim]no activity[/]")

