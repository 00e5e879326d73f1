"""Private local PostgreSQL cluster for tests and the offline demo (stdlib only).

Runs its own cluster under ``<state_dir>/pgdata`` on a non-default port; it never
touches the distribution's system cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

PG_ROOT = Path("/usr/lib/postgresql")
_SERVER_BINARIES = ("postgres", "initdb", "pg_ctl")
# Postgres refuses to run as root, so as root the server runs as the OS user the
# Debian package creates.
_SERVER_OS_USER = "postgres"
_HOST = "127.0.0.1"
# sun_path is 108 bytes on Linux; keep headroom for the NUL and ".lock" suffix.
_MAX_SOCKET_PATH = 100

StopMode = Literal["smart", "fast", "immediate"]

# Durable by default, like production: every commit is on disk before it is acknowledged. Spelled out
# (they are PostgreSQL's defaults) so a postgresql.conf edited by hand cannot quietly turn them off.
DURABLE_SETTINGS: dict[str, str] = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# Only where a caller asks for it (``unsafe_fast=True``): a crash of the server loses acknowledged
# commits, an OS crash may corrupt the cluster. Never for the fault suite, except the one test that must
# lose an acknowledged commit on purpose.
UNSAFE_FAST_SETTINGS: dict[str, str] = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.name.split("."))
    except ValueError:
        return (-1,)


def _has_server(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _SERVER_BINARIES)


def find_pg_bin() -> Path | None:
    """Newest ``/usr/lib/postgresql/<ver>/bin`` with the server binaries.

    Falls back to the directory of a ``pg_ctl`` on PATH.
    """
    if PG_ROOT.is_dir():
        for version_dir in sorted(PG_ROOT.iterdir(), key=_version_key, reverse=True):
            if _has_server(version_dir / "bin"):
                return version_dir / "bin"
    # Non-Debian layouts (Homebrew, source builds) put pg_ctl on PATH instead.
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None and _has_server(Path(pg_ctl).resolve().parent):
        return Path(pg_ctl).resolve().parent
    return None


def _tail(text: str, lines: int = 40) -> str:
    # Keep only the final state of \r-redrawn progress lines (dpkg, apt).
    rows = [row.rsplit("\r", 1)[-1] for row in text.strip().split("\n")]
    return "\n".join(rows[-lines:])


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return _tail(log.read_text(errors="replace"), lines) or "(empty)"
    except OSError as exc:
        return f"(no log: {exc})"


def ensure_postgres_installed() -> Path:
    """Return the server bin dir, apt-installing ``postgresql`` if it is missing."""
    found = find_pg_bin()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            "PostgreSQL server binaries not found and not running as root; "
            "install them with `sudo apt-get install -y postgresql`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for a concurrent apt/dpkg (e.g. unattended-upgrades) rather than fail.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    output = ""
    for cmd in (
        ["apt-get", *lock, "update"],
        ["apt-get", *lock, "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        try:
            proc = subprocess.run(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=1800
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {exc}") from exc
        output += proc.stdout
        # A failed `update` (one unreachable mirror) may still leave usable indexes,
        # so only the install step is fatal.
        if proc.returncode != 0 and cmd[-1] == "postgresql":
            raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{_tail(output)}")
    found = find_pg_bin()
    if found is None:
        raise RuntimeError(f"postgresql installed but no server binaries in {PG_ROOT}:\n{_tail(output)}")
    return found


def _server_account() -> pwd.struct_passwd:
    """OS account that owns the cluster and runs the server binaries."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(_SERVER_OS_USER)
    except KeyError as exc:
        raise RuntimeError(
            f"running as root but OS user {_SERVER_OS_USER!r} does not exist "
            "(it is created by Debian's postgresql-common package)"
        ) from exc


def _base_env() -> dict[str, str]:
    # Stray PG* variables (PGDATA, PGHOST, PGOPTIONS, ...) would silently override our
    # flags; LC_ALL=C keeps tool output in English for the error messages.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run(
    cmd: list[str], *, as_server: bool, timeout: float, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if as_server and os.geteuid() == 0:
        cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", _SERVER_OS_USER, "--", *cmd]
    try:
        # cwd=/ because the server user may not be able to enter our cwd (e.g. /root).
        return subprocess.run(
            cmd,
            input=stdin,
            env=env or _base_env(),
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
            timeout=max(timeout, 1.0),
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"timed out after {exc.timeout:.0f}s: {shlex.join(cmd)}") from exc
    except OSError as exc:
        raise RuntimeError(f"cannot run {shlex.join(cmd)}: {exc}") from exc


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return _tail(proc.stdout + proc.stderr)


def _bin_for_cluster(data_dir: Path) -> Path | None:
    """Binaries of the cluster's own major version (the only ones that can run it)."""
    try:
        version = (data_dir / "PG_VERSION").read_text().strip()
    except OSError:
        return find_pg_bin()
    candidate = PG_ROOT / version / "bin"
    return candidate if _has_server(candidate) else find_pg_bin()


def _stop_cluster(data_dir: Path, timeout: float = 60.0, mode: StopMode = "fast") -> None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    bin_dir = _bin_for_cluster(data_dir)
    if bin_dir is None:
        raise RuntimeError(f"cannot stop cluster in {data_dir}: no PostgreSQL binaries found")
    pg_ctl = str(bin_dir / "pg_ctl")
    proc = _run(
        [pg_ctl, "-D", str(data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
        as_server=True,
        timeout=timeout + 10,
    )
    if proc.returncode == 0 or not pid_file.exists():
        return
    # Exit 3 = "no server running": the pid file is left over from a crash or reboot.
    status = _run([pg_ctl, "-D", str(data_dir), "status"], as_server=True, timeout=30)
    if status.returncode == 3:
        pid_file.unlink(missing_ok=True)
        return
    raise RuntimeError(
        f"pg_ctl stop failed for {data_dir}:\n{_output(proc)}\n"
        f"--- log tail ---\n{_log_tail(data_dir.parent / 'postgres.log')}"
    )


@dataclass
class PostgresProcess:
    """A running private cluster and the app credentials provisioned in it."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    data_dir: Path

    def _netloc(self) -> str:
        userinfo = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"{userinfo}@{self.host}:{self.port}/{quote(self.database, safe='')}"

    @property
    def url(self) -> str:
        """SQLAlchemy async URL."""
        return f"postgresql+asyncpg://{self._netloc()}"

    @property
    def dsn(self) -> str:
        """Plain libpq / asyncpg DSN."""
        return f"postgresql://{self._netloc()}"

    def stop(self, mode: StopMode = "fast") -> None:
        """Shut down; no-op if already stopped.

        ``fast`` rolls back open transactions and checkpoints. ``immediate`` is a crash as far as the
        data is concerned (no checkpoint; the next start replays the WAL): what the fault suite uses.
        """
        _stop_cluster(self.data_dir, mode=mode)


def _socket_dir(state_dir: Path, port: int) -> Path:
    preferred = state_dir / "run"
    if len(f"{preferred}/.s.PGSQL.{port}") <= _MAX_SOCKET_PATH:
        return preferred
    # Deep state dirs overflow sun_path; use a short per-state-dir path instead.
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"contentline-pg-{digest}"


def _make_traversable(path: Path, account: pwd.struct_passwd) -> None:
    """Let the server user traverse ``path`` and all its parents (e.g. /root)."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            directory.chmod(stat.S_IMODE(st.st_mode) | bit)


def _owned_dir(path: Path, account: pwd.struct_passwd) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o700)  # initdb/postgres insist on 0700 (or 0750) for the data dir


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR like postgres itself: TIME_WAIT leftovers are not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_HOST, port))
        except OSError as exc:
            raise RuntimeError(f"port {_HOST}:{port} is already in use: {exc}") from exc


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings is on


def _initdb(
    *,
    bin_dir: Path,
    data_dir: Path,
    run_dir: Path,
    password: str,
    account: pwd.struct_passwd,
    timeout: float,
    sync: bool,
) -> None:
    # Superuser password via a file, not argv; peer auth on the socket lets us
    # provision without it, scram-sha-256 guards TCP.
    pwfile = run_dir / "initdb.pw"
    pwfile.write_text(password + "\n")
    os.chown(pwfile, account.pw_uid, account.pw_gid)
    pwfile.chmod(0o600)
    try:
        # C.UTF-8 gives proper Unicode ctype; fall back where it is missing (older glibc).
        for locale in ("C.UTF-8", "C"):
            proc = _run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data_dir),
                    "-E",
                    "UTF8",
                    f"--locale={locale}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    # Without sync an OS crash right after initdb can leave a broken cluster: unsafe mode only.
                    *([] if sync else ["--no-sync"]),
                ],
                as_server=True,
                timeout=timeout,
            )
            if proc.returncode == 0:
                return
            if "invalid locale" not in proc.stderr:
                break
        raise RuntimeError(f"initdb failed (exit {proc.returncode}):\n{_output(proc)}")
    finally:
        pwfile.unlink(missing_ok=True)


def _provision(
    *, psql: str, run_dir: Path, port: int, superuser: str, user: str, password: str, database: str, timeout: float
) -> None:
    u, pw, db = _sql_literal(user), _sql_literal(password), _sql_literal(database)
    # format(%I/%L) quotes server-side; \gexec runs the generated statement (CREATE
    # DATABASE cannot run in a DO block). ALTER every time so reused clusters pick up
    # a changed password/owner. SQL goes via stdin to keep the password out of argv.
    sql = f"""
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I', {u})
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {u}) \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', {u}, {pw}) \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', {db}, {u})
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {db}) \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', {db}, {u}) \\gexec
"""
    proc = _run(
        [
            psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(run_dir),
            "-p",
            str(port),
            "-U",
            superuser,
            "-d",
            "postgres",
            "-f",
            "-",
        ],
        as_server=True,
        timeout=timeout,
        stdin=sql,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"creating role/database failed:\n{_output(proc)}")


def _wait_ready(psql: str, pg: PostgresProcess, deadline: float) -> None:
    env = {**_base_env(), "PGPASSWORD": pg.password, "PGCONNECT_TIMEOUT": "3"}
    cmd = [psql, "-X", "-tA", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", pg.database, "-c", "SELECT 1"]
    while True:
        proc = _run(cmd, as_server=False, timeout=10, env=env)
        if proc.returncode == 0 and proc.stdout.strip() == "1":
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"SELECT 1 as {pg.user!r} over TCP never succeeded:\n{_output(proc)}")
        time.sleep(0.2)


def start_postgres(
    state_dir: Path,
    port: int = 55432,
    user: str = "contentline",
    password: str = "contentline",
    database: str = "contentline",
    fresh: bool = True,
    ready_timeout: float = 60.0,
    unsafe_fast: bool = False,
    settings: Mapping[str, str] | None = None,
) -> PostgresProcess:
    """Start a private cluster; return once the app user can ``SELECT 1`` over TCP.

    ``fresh`` wipes and re-initdb's ``<state_dir>/pgdata``; otherwise an existing
    cluster is reused (and initialised only if absent), e.g. to restart it after a crash: the
    server replays its WAL before it accepts connections.

    The server is durable unless ``unsafe_fast`` (fsync, synchronous_commit and full_page_writes
    off: faster DDL and commits, but a server crash loses acknowledged commits). ``settings`` adds or
    overrides server settings (``-c name=value``) for this start only.
    """
    bin_dir = ensure_postgres_installed()  # apt may take minutes; not counted in ready_timeout
    deadline = time.monotonic() + ready_timeout
    state_dir = state_dir.resolve()  # paths are handed to tools that run with cwd=/
    data_dir = state_dir / "pgdata"
    log = state_dir / "postgres.log"
    run_dir = _socket_dir(state_dir, port)
    account = _server_account()
    state_dir.mkdir(parents=True, exist_ok=True)

    # A previous run (or crashed test) may still be serving this data dir: stop it so
    # we never wipe a live cluster and always come up with the options below.
    _stop_cluster(data_dir)
    if fresh or not (data_dir / "PG_VERSION").exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        log.unlink(missing_ok=True)
    else:
        bin_dir = _bin_for_cluster(data_dir) or bin_dir
    _check_port_free(port)

    if os.geteuid() == 0:
        _make_traversable(state_dir, account)
        _make_traversable(run_dir.parent, account)
    _owned_dir(run_dir, account)
    log.touch()
    os.chown(log, account.pw_uid, account.pw_gid)  # pg_ctl's shell appends to it as the server user

    if not (data_dir / "PG_VERSION").exists():
        _owned_dir(data_dir, account)
        _initdb(
            bin_dir=bin_dir,
            data_dir=data_dir,
            run_dir=run_dir,
            password=password,
            account=account,
            timeout=deadline - time.monotonic(),
            sync=not unsafe_fast,
        )

    options = {
        "listen_addresses": _HOST,
        "max_connections": "200",
        "shared_buffers": "128MB",
        **(UNSAFE_FAST_SETTINGS if unsafe_fast else DURABLE_SETTINGS),
        **(settings or {}),
    }
    server_opts = f"-p {port} -k {shlex.quote(str(run_dir))} " + " ".join(
        f"-c {name}={shlex.quote(value)}" for name, value in options.items()
    )
    wait_s = max(1, int(deadline - time.monotonic()))
    proc = _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-l",
            str(log),
            "-o",
            server_opts,
            "-w",
            "-t",
            str(wait_s),
            "start",
        ],
        as_server=True,
        timeout=wait_s + 10,
    )
    pg = PostgresProcess(_HOST, port, user, password, database, data_dir)
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed (exit {proc.returncode}):\n{_output(proc)}")
        psql = str(bin_dir / "psql") if (bin_dir / "psql").exists() else shutil.which("psql")
        if psql is None:
            raise RuntimeError("psql not found (install postgresql-client)")
        _provision(
            psql=psql,
            run_dir=run_dir,
            port=port,
            superuser=account.pw_name,
            user=user,
            password=password,
            database=database,
            timeout=deadline - time.monotonic(),
        )
        _wait_ready(psql, pg, deadline)
    except RuntimeError as exc:
        with contextlib.suppress(RuntimeError, OSError):
            _stop_cluster(data_dir)  # don't leak a half-started server
        raise RuntimeError(
            f"PostgreSQL on port {port} ({data_dir}) failed to start: {exc}\n--- {log} tail ---\n{_log_tail(log)}"
        ) from exc
    return pg


def stop_postgres_from_state_dir(state_dir: Path) -> None:
    """Stop the cluster under ``state_dir`` (CLI ``down``); no-op if not running."""
    _stop_cluster(state_dir.resolve() / "pgdata")
