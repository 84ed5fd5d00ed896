"""A private PostgreSQL server for the tests, started once per test session on loopback.

Debian's server binaries (package ``postgresql``, installed by ``./setup.sh --test``) are looked up
under ``/usr/lib/postgresql/*/bin`` (newest first), then on ``PATH``. The cluster lives in a
temporary folder (data, unix socket, log), listens on 127.0.0.1 on a free port, trusts local
connections and runs without fsync (test data only). PostgreSQL refuses to run as root, so as root
the server runs as the ``postgres`` system user (created by the Debian package) through ``runuser``.

``TAGGER_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://me:pw@dbhost/postgres``) uses an existing
server instead: a user there that may ``CREATE DATABASE``.

Each test gets its own fresh database (`PostgresServer.create_database`). When no server can be
had, `postgres_server` raises `PostgresUnavailable` with the reason, which the fixtures turn into a
skip.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field

ENV_URL = "TAGGER_TEST_POSTGRES_URL"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started or reached (the message says why)."""


def _bindir() -> str | None:
    def version(d: str) -> tuple:
        v = os.path.basename(os.path.dirname(d))
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for d in found:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    admin_url: str
    """SQLAlchemy URL (psycopg driver) of a database we may run ``CREATE DATABASE`` from."""
    _stop: list = field(default_factory=list)
    _databases: list = field(default_factory=list)

    def create_database(self, prefix: str = "tagger_test", options: str = "") -> str:
        """A new empty database (`options`: SQL after ``CREATE DATABASE name``, e.g. a locale);
        returns its SQLAlchemy URL (``postgresql+psycopg://...``)."""
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = make_url(self.admin_url)
        with psycopg.connect(**_connect_args(admin), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" {options}')
        self._databases.append(name)
        return admin.set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database` (connections to it must be closed)."""
        import psycopg
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with psycopg.connect(**_connect_args(make_url(self.admin_url)), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        while self._stop:
            self._stop.pop()()


def _connect_args(url) -> dict:
    args = {"dbname": url.database or "postgres"}
    for key, value in (("host", url.host), ("port", url.port), ("user", url.username), ("password", url.password)):
        if value is not None:
            args[key] = value
    return args


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]


def _start_private() -> PostgresServer:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install -e '.[test]')") from None
    bindir = _bindir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (apt-get install postgresql, or ./setup.sh --test)")
    root = os.geteuid() == 0
    if root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as") from None
    # As root, TMPDIR may be private to root: /tmp is reachable by the postgres user.
    tmp = tempfile.mkdtemp(prefix="tagger-pg-", dir="/tmp" if root and os.path.isdir("/tmp") else None)
    data, sock, logfile = os.path.join(tmp, "data"), os.path.join(tmp, "sock"), os.path.join(tmp, "server.log")
    os.mkdir(sock)
    if root:
        for p in (tmp, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(tmp, 0o700)
    user = "tagger"

    def run(cmd: list[str], what: str, timeout: float = 60) -> None:
        try:
            r = subprocess.run(_as_postgres_user(cmd), capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{what} failed: {exc}") from None
        if r.returncode != 0:
            log = ""
            if os.path.exists(logfile):
                with open(logfile, errors="replace") as f:
                    log = f.read()[-2000:]
            raise PostgresUnavailable(f"{what} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]} {log}")

    try:
        run([os.path.join(bindir, "initdb"), "-D", data, "-U", user, "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"], "initdb")  # fmt: skip
        port = _free_port()
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50")  # fmt: skip
        run([os.path.join(bindir, "pg_ctl"), "-D", data, "-l", logfile, "-o", opts, "-w", "-t", "60", "start"],
            "starting the PostgreSQL server", timeout=90)  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    server = PostgresServer(admin_url=f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres")

    def stop() -> None:
        subprocess.run(_as_postgres_user([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)

    server._stop.append(stop)
    return server


_SERVER: PostgresServer | None = None
_FAILURE: str | None = None


def postgres_server() -> PostgresServer:
    """The session's server (started on first use, stopped when the test process exits)."""
    global _SERVER, _FAILURE
    if _SERVER is not None:
        return _SERVER
    if _FAILURE is not None:
        raise PostgresUnavailable(_FAILURE)
    external = os.environ.get(ENV_URL)
    try:
        if external:
            _SERVER = PostgresServer(admin_url=external)
            _SERVER.drop_database(_SERVER.create_database("tagger_probe"))  # fail early, with the reason
        else:
            _SERVER = _start_private()
            atexit.register(_SERVER.stop)
    except PostgresUnavailable as exc:
        _SERVER, _FAILURE = None, str(exc)
        raise
    except Exception as exc:  # e.g. the external server refuses the connection
        _SERVER, _FAILURE = None, f"cannot use {ENV_URL}: {exc}"
        raise PostgresUnavailable(_FAILURE) from None
    return _SERVER


def postgres_url_fixture():
    """Body of a function-scoped fixture: a fresh database URL, dropped afterwards."""
    import pytest

    try:
        server = postgres_server()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    url = server.create_database()
    yield url
    try:
        server.drop_database(url)
    except Exception:  # a test that left a connection open; the cluster goes away at exit anyway
        pass
