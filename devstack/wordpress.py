"""A real local WordPress for tests and the demo (stdlib only), started and stopped like PostgreSQL.

Debian's ``wordpress`` package served by ``php -S`` (a router script, several workers) with a private
MariaDB instance, everything under ``<state_dir>``: its own datadir, socket and port, no system service,
nothing in /etc/wordpress. Installed non-interactively by a PHP script that calls ``wp_install()`` and
creates the application passwords the tests use (``WP_ENVIRONMENT_TYPE=local`` allows them without TLS).

Debian's quirk: /usr/share/wordpress/wp-config.php loads /etc/wordpress/config-<host>.php, one file per host
name whatever the port, so two instances on 127.0.0.1 would share it. Each instance therefore gets a
document root of symlinks into /usr/share/wordpress with its own wp-config.php and wp-content, and the
router pins ABSPATH there (see assets/wp-router.php).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.kafka import _is_alive
from devstack.postgres import _check_port_free, _log_tail, _tail

WP_ROOT = Path("/usr/share/wordpress")
THEME = "twentytwentythree"
PACKAGES = (
    "wordpress",
    f"wordpress-theme-{THEME}",
    "php-cli",
    "php-mysql",
    "php-gd",  # image sub-sizes of uploaded media
    "php-xml",
    "php-curl",
    "php-mbstring",
    "mariadb-server",
)
_PHP_EXTENSIONS = ("mysqli", "gd", "xml", "curl", "mbstring")
_BINARIES = ("php", "mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb")
_ASSETS = Path(__file__).resolve().parent / "assets"
MU_PLUGIN = (
    Path(__file__).resolve().parents[1] / "services" / "publisher" / "wordpress-plugin" / "contentline-publisher.php"
)
_HOST = "127.0.0.1"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
_DB_NAME = "wordpress"
_DB_USER = "wordpress"
ADMIN_USER = "admin"
SUBSCRIBER_USER = "subscriber"
# Enough for the publisher's parallel uploads plus a test reading the REST API at the same time.
_PHP_WORKERS = 4


def _which(name: str) -> str | None:
    # mariadbd lives in /usr/sbin, which is not on every user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def missing_parts() -> list[str]:
    """What the local WordPress needs and this machine lacks (empty when all is there)."""
    missing = [name for name in _BINARIES if _which(name) is None]
    if not (WP_ROOT / "wp-settings.php").is_file():
        missing.append(str(WP_ROOT))
    if not (WP_ROOT / "wp-content" / "themes" / THEME).is_dir():
        missing.append(f"theme {THEME}")
    php = _which("php")
    if php is not None:
        proc = subprocess.run([php, "-m"], capture_output=True, text=True, check=False, timeout=30)
        modules = {line.strip().lower() for line in proc.stdout.splitlines()}
        missing += [f"php extension {ext}" for ext in _PHP_EXTENSIONS if ext not in modules]
    return missing


def ensure_wordpress_installed() -> None:
    """apt-get install Debian's wordpress, PHP and MariaDB packages when anything is missing."""
    missing = missing_parts()
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"the local WordPress needs {', '.join(missing)} and this is not root; install them with "
            f"`sudo apt-get install -y --no-install-recommends {' '.join(PACKAGES)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]  # wait for a concurrent apt/dpkg rather than fail
    output = ""
    install = ["apt-get", *lock, "install", "-y", "--no-install-recommends", *PACKAGES]
    for cmd in (["apt-get", *lock, "update"], install):
        try:
            proc = subprocess.run(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=1800
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {exc}") from exc
        output += proc.stdout
        # A failed `update` (one unreachable mirror) may still leave usable indexes; only the install is fatal.
        if proc.returncode != 0 and cmd is install:
            raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{_tail(output)}")
    still = missing_parts()
    if still:
        raise RuntimeError(f"installed {' '.join(PACKAGES)} but still missing {', '.join(still)}:\n{_tail(output)}")


# ---------------------------------------------------------------------- processes
def _pid_from(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _runs_with(pid: int, marker: str) -> bool:
    """Guard against pid reuse: does the process's command line mention this instance's path?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _terminate(pid: int, popen: subprocess.Popen[bytes] | None, timeout: float, group: bool) -> None:
    """SIGTERM (the process group for the PHP server and its workers), SIGKILL after `timeout`."""

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig) if group else os.kill(pid, sig)

    if popen is not None and popen.poll() is not None:
        return
    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:  # reaps our own child: no zombie left behind
            break
        if popen is None and not _is_alive(pid):
            break
        time.sleep(0.1)
    else:
        send(signal.SIGKILL)
        if popen is not None:
            popen.wait(10)
    if group:  # workers of a server that died first are orphans in its group
        send(signal.SIGKILL)


def _stop_pidfile(pidfile: Path, marker: str, timeout: float, group: bool) -> None:
    pid = _pid_from(pidfile)
    if pid is not None and _runs_with(pid, marker):
        _terminate(pid, None, timeout, group)
    pidfile.unlink(missing_ok=True)


@dataclass
class _Paths:
    state: Path

    @property
    def docroot(self) -> Path:
        return self.state / "www"

    @property
    def datadir(self) -> Path:
        return self.state / "mariadb"

    @property
    def db_pidfile(self) -> Path:
        return self.state / "mariadb.pid"

    @property
    def php_pidfile(self) -> Path:
        return self.state / "php.pid"

    @property
    def db_log(self) -> Path:
        return self.state / "mariadb.log"

    @property
    def php_log(self) -> Path:
        return self.state / "php.log"

    @property
    def socket(self) -> Path:
        preferred = self.state / "mysqld.sock"
        if len(str(preferred)) <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha1(str(self.state).encode()).hexdigest()[:12]  # deep state dirs overflow sun_path
        return Path(tempfile.gettempdir()) / f"contentline-mariadb-{digest}.sock"


@dataclass
class WordPressProcess:
    """A running local WordPress and what a client needs to talk to it."""

    url: str
    admin_user: str
    admin_password: str = field(repr=False)
    app_password: str = field(repr=False)  # the administrator's application password
    subscriber_user: str = SUBSCRIBER_USER
    subscriber_app_password: str = field(default="", repr=False)  # a user who may not publish
    version: str = ""
    state_dir: Path = Path()
    start_seconds: float = 0.0  # database, install and server, apt excluded
    _php: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    _db: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def rest_url(self) -> str:
        return f"{self.url}/wp-json"

    @property
    def uploads_dir(self) -> Path:
        return _Paths(self.state_dir).docroot / "wp-content" / "uploads"

    def stop(self) -> None:
        """Stop the PHP server, then MariaDB (clean shutdown); safe to call twice."""
        paths = _Paths(self.state_dir)
        for popen, pidfile, marker, group in (
            (self._php, paths.php_pidfile, str(paths.docroot), True),
            (self._db, paths.db_pidfile, str(paths.datadir), False),
        ):
            if popen is not None:
                _terminate(popen.pid, popen, 30.0, group)
                pidfile.unlink(missing_ok=True)
            else:
                _stop_pidfile(pidfile, marker, 30.0, group)


def stop_wordpress_from_state_dir(state_dir: Path) -> None:
    """Stop what a crashed or killed earlier session left running under ``state_dir``; no-op otherwise."""
    paths = _Paths(state_dir.resolve())
    _stop_pidfile(paths.php_pidfile, str(paths.docroot), 30.0, group=True)
    _stop_pidfile(paths.db_pidfile, str(paths.datadir), 60.0, group=False)


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd, input=stdin, env=env, cwd="/", capture_output=True, text=True, check=False, timeout=max(timeout, 1)
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"timed out after {exc.timeout:.0f}s: {shlex.join(cmd)}") from exc
    except OSError as exc:
        raise RuntimeError(f"cannot run {shlex.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}")
    return proc.stdout


def _user_args() -> list[str]:
    # mariadbd refuses root unless told so explicitly; as another user it simply runs as that user.
    return ["--user=root"] if os.geteuid() == 0 else []


def _server_options(paths: _Paths, port: int) -> list[str]:
    # A throwaway test database: small logs and buffers, no binlog, no fsync per commit.
    return [
        f"--datadir={paths.datadir}",
        f"--socket={paths.socket}",
        f"--port={port}",
        f"--bind-address={_HOST}",
        f"--pid-file={paths.db_pidfile}",
        f"--log-error={paths.db_log}",
        "--skip-name-resolve",
        "--innodb-log-file-size=8M",
        "--innodb-buffer-pool-size=32M",
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-log-bin",
        "--performance-schema=OFF",
        "--max-connections=100",
    ]


def _start_mariadb(paths: _Paths, port: int, db_password: str, deadline: float) -> subprocess.Popen[bytes]:
    install_db, mariadbd, admin, client = (
        str(_which(name)) for name in ("mariadb-install-db", "mariadbd", "mariadb-admin", "mariadb")
    )
    _run(
        [
            install_db,
            "--no-defaults",
            f"--datadir={paths.datadir}",
            *_user_args(),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=32M",
        ],
        timeout=deadline - time.monotonic(),
    )
    with paths.db_log.open("ab") as log:
        proc = subprocess.Popen(
            [mariadbd, "--no-defaults", *_user_args(), *_server_options(paths, port)],
            cwd="/",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C must not reach it before the orderly stop
        )
    local = ["--no-defaults", f"--socket={paths.socket}", "--user=root"]
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {proc.returncode}:\n{_log_tail(paths.db_log)}")
        ping = subprocess.run([admin, *local, "ping"], capture_output=True, check=False, timeout=10)
        if ping.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"mariadbd not answering on {paths.socket}:\n{_log_tail(paths.db_log)}")
        time.sleep(0.1)
    # WordPress connects over TCP as its own user; the password travels on stdin, not argv.
    _run(
        [client, *local],
        timeout=deadline - time.monotonic(),
        stdin=(
            f"CREATE DATABASE {_DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
            f"CREATE USER '{_DB_USER}'@'{_HOST}' IDENTIFIED BY '{db_password}';\n"
            f"GRANT ALL ON {_DB_NAME}.* TO '{_DB_USER}'@'{_HOST}';\n"
        ),
    )
    return proc


def _build_docroot(paths: _Paths) -> None:
    """Symlinks into Debian's WordPress, plus this instance's own wp-config.php and wp-content."""
    www = paths.docroot
    www.mkdir(parents=True)
    for entry in WP_ROOT.iterdir():
        if entry.name not in {"wp-config.php", "wp-content", ".htaccess"}:
            (www / entry.name).symlink_to(entry)
    shutil.copyfile(_ASSETS / "wp-config.php", www / "wp-config.php")
    content = www / "wp-content"
    for name in ("uploads", "mu-plugins", "upgrade"):
        (content / name).mkdir(parents=True)
    for name in ("themes", "plugins"):
        (content / name).symlink_to(WP_ROOT / "wp-content" / name)
    # The plugin customers install too: it gives the publisher its idempotency marker.
    shutil.copyfile(MU_PLUGIN, content / "mu-plugins" / MU_PLUGIN.name)


def _wait_rest(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"php -S exited with {proc.returncode}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/wp-json/", timeout=5) as response:
                if response.status == 200 and "routes" in json.loads(response.read()):
                    return
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url}/wp-json/ not ready: {last}\n{_log_tail(log)}")


def start_wordpress(state_dir: Path, port: int, db_port: int, ready_timeout: float = 60.0) -> WordPressProcess:
    """A freshly installed WordPress on http://127.0.0.1:<port>; returns once its REST API answers.

    Whatever an earlier session left under ``state_dir`` is stopped and wiped first.
    """
    ensure_wordpress_installed()  # apt may take minutes; not counted in ready_timeout
    started = time.monotonic()
    deadline = started + ready_timeout
    paths = _Paths(state_dir.resolve())
    stop_wordpress_from_state_dir(paths.state)
    shutil.rmtree(paths.state, ignore_errors=True)
    paths.state.mkdir(parents=True)
    paths.socket.unlink(missing_ok=True)
    _check_port_free(port)
    _check_port_free(db_port)

    url = f"http://{_HOST}:{port}"
    admin_password, db_password = secrets.token_hex(16), secrets.token_hex(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONTENTLINE_WP_")},
        "CONTENTLINE_WP_ROOT": str(paths.docroot),
        "CONTENTLINE_WP_URL": url,
        "CONTENTLINE_WP_DB_NAME": _DB_NAME,
        "CONTENTLINE_WP_DB_USER": _DB_USER,
        "CONTENTLINE_WP_DB_PASSWORD": db_password,
        "CONTENTLINE_WP_DB_HOST": f"{_HOST}:{db_port}",
        "CONTENTLINE_WP_SALT": secrets.token_hex(32),
        "CONTENTLINE_WP_ADMIN_USER": ADMIN_USER,
        "CONTENTLINE_WP_ADMIN_PASSWORD": admin_password,
        "PHP_CLI_SERVER_WORKERS": str(_PHP_WORKERS),
    }
    php = str(_which("php"))
    # Uploads of generated images need more than PHP's 2 MB default; opcache makes each request ~5x faster.
    php_ini = [
        "-d", "upload_max_filesize=64M", "-d", "post_max_size=64M", "-d", "memory_limit=256M",
        "-d", "opcache.enable_cli=1", "-d", "display_errors=stderr",
    ]  # fmt: skip
    wp = WordPressProcess(url, ADMIN_USER, admin_password, app_password="", state_dir=paths.state)
    try:
        wp._db = _start_mariadb(paths, db_port, db_password, deadline)
        _build_docroot(paths)
        installed = json.loads(
            _run([php, *php_ini, str(_ASSETS / "wp-install.php")], timeout=deadline - time.monotonic(), env=env)
            .strip()
            .splitlines()[-1]
        )
        wp.app_password = installed["admin_app_password"]
        wp.subscriber_app_password = installed["subscriber_app_password"]
        wp.version = installed["version"]
        with paths.php_log.open("ab") as log:
            wp._php = subprocess.Popen(
                [php, *php_ini, "-S", f"{_HOST}:{port}", "-t", str(paths.docroot), str(_ASSETS / "wp-router.php")],
                cwd=paths.docroot,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the workers are stopped with it
            )
        paths.php_pidfile.write_text(f"{wp._php.pid}\n")
        _wait_rest(url, wp._php, paths.php_log, deadline)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        with contextlib.suppress(Exception):
            wp.stop()  # don't leak a half-started server
        raise RuntimeError(f"local WordPress under {paths.state} failed to start: {exc}") from exc
    wp.start_seconds = round(time.monotonic() - started, 1)
    return wp
