"""`python -m devstack demo|up|down|status`: the whole stack on this machine.

`--local-model` (demo, up): chat from a real small model (llama.cpp's llama-server with SmolLM2-135M-Instruct,
built and cached on first use, see devstack/llama.py); embeddings and images stay with the fake.

* `demo`   — start everything under .stack/demo (a local WordPress too), push the example keywords through all
             seven stages with live progress, auto-approve drafts and publish them at once to the local
             WordPress, print the summary and one post's URL, stop everything (also on Ctrl-C). Exit 0 only if
             the run completed (and, with publishing, drafts were published and none failed).
* `up`     — start everything under .stack/dev and leave it running; `.stack/dev/stack.json` records it.
* `down`   — stop what `up` started.
* `status` — show what `up` started and whether it still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from devstack import kafka as local_kafka
from devstack import postgres as local_pg
from devstack import wordpress as local_wp
from devstack.llama import MODEL_ALIAS
from devstack.ports import free_port
from devstack.stack import ROOT, SERVICES, Stack

DEMO_DIR = Path(".stack/demo")
DEV_DIR = Path(".stack/dev")
STATE_FILE = "stack.json"
DEFAULT_KEYWORDS = ROOT / "examples" / "keywords.csv"
DEFAULT_API_PORT = 8700  # the CLI's default --api

console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="Run contentline's whole stack locally (Kafka, PostgreSQL, fake AI, five services).")

RealAiOption = Annotated[bool, typer.Option(
    "--real-ai", help="Call the real OpenAI API (OPENAI_API_KEY / OPENAI_BASE_URL from the environment) "
                      "instead of the bundled fake.")]
UnsafeFastDbOption = Annotated[bool, typer.Option(
    "--unsafe-fast-db", help="Run the local PostgreSQL with fsync, synchronous_commit and full_page_writes off: "
                             "faster, but a crash of the server loses acknowledged commits. Durable by default.")]
LocalModelOption = Annotated[bool, typer.Option(
    "--local-model", help="Chat from a real small local model (llama-server + SmolLM2-135M-Instruct, built into "
                          "~/.cache/contentline on first use: 15-30 min); embeddings and images stay fake.")]


# ---------------------------------------------------------------------- helpers
def _check_real_ai(real_ai: bool, local_model: bool = False) -> None:
    if real_ai and local_model:
        err.print("[bold red]--real-ai and --local-model exclude each other[/]: pick one provider for chat.")
        raise typer.Exit(2)
    if local_model:
        from devstack import llama

        try:  # before any spinner: a first build runs for many minutes and should say how far it got
            llama.ensure_llama_server(lambda msg: _say(err, f"[dim]llama:[/] {msg}"))
            llama.ensure_model(lambda msg: _say(err, f"[dim]llama:[/] {msg}"))
        except RuntimeError as exc:
            err.print(f"[bold red]--local-model: {exc}[/]")
            raise typer.Exit(1) from None
    if real_ai and not os.environ.get("OPENAI_API_KEY"):
        err.print("[bold red]--real-ai needs OPENAI_API_KEY in the environment[/] (and OPENAI_BASE_URL for a "
                  "compatible provider); refusing to start. Leave out --real-ai to use the bundled fake AI.")
        raise typer.Exit(2)


def _leftover_services(state_dir: Path) -> dict[str, int]:
    """Service/fake-AI processes of an earlier session on this state dir that was killed before it could stop them.

    Stack gives every process it spawns CONTENTLINE_MEDIA_DIR=<state_dir>/media, so that identifies them without
    any pid file (which a SIGKILLed session never gets to write or read).
    """
    media = (state_dir / "media").resolve()
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            name = _process_name(argv)
            if name is None:
                continue
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
            configured = env.get(b"CONTENTLINE_MEDIA_DIR")
            if configured and (Path(os.readlink(proc / "cwd")) / configured.decode()).resolve() == media:
                found[name] = int(proc.name)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


def _process_name(argv: list[bytes]) -> str | None:
    """Which of the stack's processes this command line is (services.X → X), or None if none of them."""
    if argv and Path(argv[0].decode(errors="replace")).name == "llama-server":
        return "llama-server"
    if b"-m" not in argv[:-1]:
        return None
    module = argv[argv.index(b"-m") + 1].decode(errors="replace")
    if module == "fakeai":
        return module
    return module.removeprefix("services.") if module.startswith("services.") else None


def _stop_leftovers(state_dir: Path) -> None:
    """Stop whatever a crashed/killed earlier session left running on this state dir (no-op otherwise)."""
    leftovers = _leftover_services(state_dir)
    if leftovers:
        _say(err, f"[yellow]Stopping {len(leftovers)} processes left over under {state_dir}: "
                  f"{', '.join(leftovers)}[/]")
        _terminate_all(leftovers)
    with contextlib.suppress(Exception):
        local_kafka.stop_kafka_from_pidfile(state_dir / "kafka")
    with contextlib.suppress(Exception):
        local_pg.stop_postgres_from_state_dir(state_dir / "postgres")
    with contextlib.suppress(Exception):
        local_wp.stop_wordpress_from_state_dir(state_dir / "wordpress")


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _interrupts_as_keyboardinterrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP behave like Ctrl-C, so the `finally` that stops the stack runs for them too."""
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Shutdown must not be cut short by a second Ctrl-C (that would leak servers)."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(out: Console, message: str) -> None:
    with contextlib.suppress(OSError):
        out.print(message)


def _stop_stack(stack: Stack) -> float:
    started = time.monotonic()
    with _uninterruptible():
        # SIGTERM everything at once (each drains in parallel), then Stack.stop waits for them one by one.
        for proc in stack.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        stack.stop()
        if stack.infra_source in {"local", ""}:
            _stop_leftovers(stack.state_dir)  # belt and braces: a start interrupted half-way
    return time.monotonic() - started


def _dead_process(stack: Stack) -> str | None:
    """A service that exited mid-run means the run cannot finish: say which, and where its log is."""
    for name, proc in stack.procs.items():
        if proc.poll() is not None:
            return f"{name} exited with code {proc.returncode}; see {stack.log_path(name)}"
    return None


def _count_files(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else 0


def _print_keys(operator_file: Path, account_id: str | None, key_file: Path) -> None:
    """Where the keys are (files readable by this user only); never the keys themselves."""
    console.print(f"[bold]Keys:[/] operator key in {operator_file}; account {account_id or 'demo'}'s API key in "
                  f"{key_file.resolve()}")


# ---------------------------------------------------------------------- demo
@app.command()
def demo(
    keywords: Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True,
                                           help="Keyword file (CSV export or .json).")] = DEFAULT_KEYWORDS,
    real_ai: RealAiOption = False,
    local_model: LocalModelOption = False,
    timeout: Annotated[float | None, typer.Option(
        min=10, help="Give up following the run after this many seconds [600; 3600 with --local-model].")] = None,
    unsafe_fast_db: UnsafeFastDbOption = False,
    publish: Annotated[bool, typer.Option(
        "--publish/--no-publish", help="Also start a local WordPress; publish auto-approved drafts to it.")] = True,
    approvals: Annotated[int, typer.Option(
        min=0, help="Auto-approve (and publish) at most this many drafts; 0 = every one that passes.")] = 10,
) -> None:
    """Start everything, run the example keywords through all 7 stages, publish, print the summary, stop everything."""
    from contentline_cli.app import create_site, follow_and_summarise, import_keywords, start_run
    from contentline_cli.bootstrap import create_first_account, ensure_operator_key
    from contentline_cli.client import ApiError, ContentlineClient
    from contentline_cli.publishing import follow_publishing, publish_automatically

    _check_real_ai(real_ai, local_model)
    timeout = timeout or (3600 if local_model else 600)
    keywords = keywords.resolve()
    state_dir = DEMO_DIR
    _stop_leftovers(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)

    t0 = time.monotonic()
    secrets_dir = state_dir / "secrets"
    operator_file = ensure_operator_key(secrets_dir).resolve()
    # `immediate` publishing spaces a site's drafts 60 s apart; a second is enough for a demo.
    stack = Stack(state_dir=state_dir, use_fake_ai=not real_ai, local_model=local_model, with_wordpress=publish,
                  unsafe_fast_db=unsafe_fast_db,
                  extra_env={"CONTENTLINE_OPERATOR_KEY_FILE": str(operator_file),
                             "CONTENTLINE_PUBLISH_IMMEDIATE_SPACING_SECONDS": "1"})
    code = 1
    try:
        with _interrupts_as_keyboardinterrupt():
            with console.status(f"Starting Kafka, PostgreSQL, {'WordPress, ' if publish else ''}"
                                f"{'the fake AI, ' if not real_ai else ''}"
                                f"{'llama-server, ' if local_model else ''}{len(SERVICES)} services…"):
                stack.start_all()
            startup = time.monotonic() - t0
            ai = "fake AI at " + stack.fake_url if not real_ai else "real AI at " + os.environ.get(
                "OPENAI_BASE_URL", "https://api.openai.com/v1")
            if local_model:
                ai = f"chat from {MODEL_ALIAS} at {stack.llama_url}, embeddings/images from the {ai}"
            console.print(f"[bold]Infrastructure:[/] {stack.infra_source} (Kafka {stack.kafka_bootstrap}); {ai}")
            console.print(f"[bold]Stack up in {startup:.1f}s[/]; API at {stack.api_url}")

            account_id, key_file = create_first_account(stack.api_url, secrets_dir)
            _print_keys(operator_file, account_id, key_file)
            # The demo account lives only as long as this demo: its key is shown so the dashboard can be opened.
            console.print(f"[bold]Dashboard:[/] {stack.api_url}/dashboard/ — sign in with the demo key "
                          f"{key_file.read_text().strip()}")
            with ContentlineClient(stack.api_url, api_key=key_file.read_text().strip()) as client:
                try:
                    site = create_site(client, "Demo site", "demo.example.com")
                    if stack.wordpress is not None:
                        wp = stack.wordpress
                        publish_automatically(client, site.id, url=wp.url, user=wp.admin_user,
                                              password=wp.app_password, approvals_per_run=approvals)
                    import_keywords(client, site.id, keywords)
                    run = start_run(client, site.id)
                    code = follow_and_summarise(client, run.run_id, timeout=timeout,
                                                watchdog=lambda: _dead_process(stack))
                    if code == 0 and stack.wordpress is not None:
                        code = follow_publishing(client, site.id, timeout=timeout,
                                                 watchdog=lambda: _dead_process(stack))
                except ApiError as exc:
                    err.print(f"[bold red]API error:[/] {exc}")
                    code = 1
            if code == 0 and sys.stdin.isatty():  # someone is watching: keep the dashboard up until they are done
                console.print(f"The dashboard stays up at {stack.api_url}/dashboard/sites/{site.id}; "
                              "press Enter to stop everything.")
                with contextlib.suppress(EOFError):
                    input()
    except KeyboardInterrupt:
        code = 130
        _say(err, "\n[yellow]Interrupted — stopping everything…[/]")
    except RuntimeError as exc:  # a server that would not start; the message carries its log tail
        code = 1
        _say(err, f"[bold red]The stack failed to start:[/] {exc}")
    finally:
        # Output may fail here (terminal closed → SIGHUP, pipe closed): it must never cost the cleanup.
        with _uninterruptible():
            _say(console, "Stopping services, Kafka and PostgreSQL…")
            stop_seconds = _stop_stack(stack)
        logs = state_dir / "logs"
        _say(console, f"Stack stopped in {stop_seconds:.1f}s. [bold]Total wall time {time.monotonic() - t0:.1f}s[/]")
        _say(console, f"Media files: {stack.media_dir.resolve()} ({_count_files(stack.media_dir)} files)")
        _say(console, f"Logs:        {logs.resolve()}")
    raise typer.Exit(code)


# ---------------------------------------------------------------------- up / down / status
StateDirOption = Annotated[Path, typer.Option("--state-dir", help="Where `up` keeps its servers' state.")]


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_ours(name: str, pid: int) -> bool:
    """Guard against pid reuse: the pid still runs `python -m services.<name>` / `-m fakeai` / llama-server."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and _process_name(argv) == name


def _pidfile_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _health(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as response:
        return bool(response.status == 200)
    return False


def _port_free(port: int) -> bool:
    return local_kafka.port_is_free(port)


@app.command()
def up(
    state_dir: StateDirOption = DEV_DIR,
    real_ai: RealAiOption = False,
    local_model: LocalModelOption = False,
    api_port: Annotated[int, typer.Option(help="API port (a free one is picked if this is taken).")] = DEFAULT_API_PORT,
    unsafe_fast_db: UnsafeFastDbOption = False,
) -> None:
    """Start the stack and leave it running (stop it with `down`)."""
    _check_real_ai(real_ai, local_model)
    state = _read_state(state_dir)
    if state and any(_is_ours(n, p) for n, p in state.get("pids", {}).items()):
        err.print(f"[yellow]A stack is already up from {state_dir} (API {state.get('api_url')}); "
                  "`python -m devstack down` first.[/]")
        raise typer.Exit(1)
    _stop_leftovers(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)

    port = api_port if _port_free(api_port) else free_port()
    if port != api_port:
        err.print(f"[yellow]Port {api_port} is taken; the API gets port {port}.[/]")
    from contentline_cli.bootstrap import create_first_account, ensure_operator_key

    secrets_dir = state_dir / "secrets"
    operator_file = ensure_operator_key(secrets_dir).resolve()
    stack = Stack(state_dir=state_dir, use_fake_ai=not real_ai, local_model=local_model, api_port=port,
                  unsafe_fast_db=unsafe_fast_db, extra_env={"CONTENTLINE_OPERATOR_KEY_FILE": str(operator_file)})
    t0 = time.monotonic()
    try:
        with _interrupts_as_keyboardinterrupt(), console.status("Starting Kafka, PostgreSQL, fake AI and services…"):
            stack.start_all()
    except (KeyboardInterrupt, RuntimeError) as exc:
        if isinstance(exc, RuntimeError):
            err.print(f"[bold red]The stack failed to start:[/] {exc}")
        _stop_stack(stack)
        raise typer.Exit(1) from None

    account_id, key_file = create_first_account(stack.api_url, secrets_dir)
    key_file = key_file.resolve()
    pids = {name: proc.pid for name, proc in stack.procs.items()}
    env = {
        "CONTENTLINE_API_URL": stack.api_url,
        "CONTENTLINE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "CONTENTLINE_DATABASE_URL": stack.database_url,
        "CONTENTLINE_MEDIA_DIR": str(stack.media_dir.resolve()),
        # Make the test fixture / another Stack reuse these servers instead of starting its own.
        "CONTENTLINE_STACK_KAFKA": stack.kafka_bootstrap,
        "CONTENTLINE_STACK_DATABASE_URL": stack.database_url,
        "CONTENTLINE_API_KEY_FILE": str(key_file),  # the CLI's key (a path: no secret in this output)
    }
    env |= stack.ai_env()
    record = {
        "started_at": datetime.now(UTC).isoformat(), "infra_source": stack.infra_source,
        "api_url": stack.api_url, "fake_url": stack.fake_url if not real_ai else None,
        "llama_url": stack.llama_url or None,
        "kafka_bootstrap": stack.kafka_bootstrap, "database_url": stack.database_url,
        "state_dir": str(state_dir.resolve()), "media_dir": str(stack.media_dir.resolve()),
        "logs_dir": str((state_dir / "logs").resolve()), "pids": pids, "env": env,
        "keys": {"operator_key_file": str(operator_file), "account_key_file": str(key_file),
                 "account_id": account_id},
    }
    (state_dir / STATE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"[bold green]Stack up[/] in {time.monotonic() - t0:.1f}s "
                  f"(infrastructure: {stack.infra_source}); state in {state_dir / STATE_FILE}")
    _print_keys(operator_file, account_id, key_file)
    where = state_dir.resolve()
    found = (f"from {where.parents[1]} and below" if where.parts[-2:] == (".stack", "dev")
             else f"with CONTENTLINE_STACK_STATE={where / STATE_FILE}")  # fmt: skip
    console.print(f"Logs in {state_dir / 'logs'}. The `contentline` CLI finds this stack by itself {found} "
                  "(e.g. `contentline site create 'My site'`). For other tools:\n")
    for key, value in env.items():
        print(f"export {key}='{value}'")
    console.print("\nStop it with `make down` (python -m devstack down).")

    if stack.infra_source == "testcontainers":
        # Testcontainers' reaper removes the containers once this process exits, so stay in the foreground.
        console.print("[yellow]Kafka/PostgreSQL run in containers that live as long as this process: "
                      "keeping it in the foreground — Ctrl-C stops everything.[/]")
        try:
            with _interrupts_as_keyboardinterrupt():
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            _stop_stack(stack)
            (state_dir / STATE_FILE).unlink(missing_ok=True)
    # Otherwise exit and leave them running: services and Kafka run in their own sessions, PostgreSQL is a daemon.


def _terminate_all(pids: dict[str, int], timeout: float = 30.0) -> list[str]:
    live = {name: pid for name, pid in pids.items() if _is_ours(name, pid)}
    # Workers first, orchestrator and fake AI after them, like Stack.stop (reverse start order).
    for pid in reversed(list(live.values())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in live.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in live.items():
        if _alive(pid):
            err.print(f"[yellow]{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it[/]")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return list(live)


@app.command()
def down(state_dir: StateDirOption = DEV_DIR) -> None:
    """Stop what `up` started: services (SIGTERM), then Kafka and PostgreSQL."""
    state = _read_state(state_dir)
    if state is None:
        console.print(f"No {state_dir / STATE_FILE}; stopping whatever still runs under {state_dir}.")
    with _uninterruptible():
        recorded = {str(k): int(v) for k, v in (state or {}).get("pids", {}).items()}
        # Also whatever runs on this state dir without a record (an `up` killed half-way, a lost stack.json).
        found = _leftover_services(state_dir) | {n: p for n, p in recorded.items() if _is_ours(n, p)}
        stopped = _terminate_all(found)
        console.print(f"Stopped {len(stopped)} processes: {', '.join(stopped) or 'none running'}")
        if (state or {}).get("infra_source", "local") == "local":
            kafka_pid = _pidfile_pid(state_dir / "kafka" / "kafka.pid")
            local_kafka.stop_kafka_from_pidfile(state_dir / "kafka")
            console.print(f"Kafka: {'stopped' if kafka_pid else 'not running'}")
            pg_pid = _pidfile_pid(state_dir / "postgres" / "pgdata" / "postmaster.pid")
            local_pg.stop_postgres_from_state_dir(state_dir / "postgres")
            console.print(f"PostgreSQL: {'stopped' if pg_pid else 'not running'}")
    (state_dir / STATE_FILE).unlink(missing_ok=True)


@app.command()
def status(state_dir: StateDirOption = DEV_DIR) -> None:
    """Show what `up` started and whether it runs; exit 0 only if everything does."""
    state = _read_state(state_dir)
    if state is None:
        console.print(f"Not up (no {state_dir / STATE_FILE}).")
        raise typer.Exit(1)
    table = Table(title=f"contentline stack ({state.get('infra_source')}, started {state.get('started_at')})",
                  title_justify="left")
    table.add_column("component")
    table.add_column("pid", justify="right")
    table.add_column("state")
    table.add_column("where")
    all_up = True

    def row(name: str, pid: int | None, ok: bool, where: str = "") -> None:
        nonlocal all_up
        all_up &= ok
        table.add_row(name, str(pid or "-"), "[green]running[/]" if ok else "[red]down[/]", where)

    if state.get("infra_source") == "local":
        kafka_pid = _pidfile_pid(state_dir / "kafka" / "kafka.pid")
        row("kafka", kafka_pid, bool(kafka_pid and _alive(kafka_pid)), str(state.get("kafka_bootstrap", "")))
        pg_pid = _pidfile_pid(state_dir / "postgres" / "pgdata" / "postmaster.pid")
        db = str(state.get("database_url", "")).rsplit("@", 1)[-1]
        row("postgresql", pg_pid, bool(pg_pid and _alive(pg_pid)), db)
    for name, pid in state.get("pids", {}).items():
        where = ""
        if name == "orchestrator":
            where = f"{state.get('api_url')} ({'healthy' if _health(str(state.get('api_url'))) else 'no answer'})"
        elif name == "fakeai":
            where = str(state.get("fake_url") or "")
        elif name == "llama-server":
            where = str(state.get("llama_url") or "")
        row(name, int(pid), _is_ours(name, int(pid)), where)
    console.print(table)
    console.print(f"logs: {state.get('logs_dir')}   media: {state.get('media_dir')}")
    raise typer.Exit(0 if all_up else 1)


if __name__ == "__main__":
    app(prog_name="python -m devstack")
