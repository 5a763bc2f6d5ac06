"""A throwaway Postgres server for the tests: Debian's binaries, ``initdb`` into a fresh
directory under /tmp, a unix socket in that directory and no TCP at all, stopped (and the
directory removed) at the end of the session.

Postgres refuses to run as root, so under root the server runs as the ``postgres`` user
the Debian package creates (``runuser -u postgres --``) in a directory that user owns.
Without the binaries the Postgres tests are skipped, or fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.engine import make_url

from tests.conftest import missing

SUPERUSER = "postgres"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


def find_bindir() -> Path | None:
    """The newest Debian postgresql's bin folder (``/usr/lib/postgresql/<v>/bin``), else
    the folder of a ``pg_ctl`` on the PATH."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    found = [b for b in found if (b / "initdb").exists() and os.access(b / "pg_ctl", os.X_OK)]
    if found:

        def version(b: Path) -> tuple[int, ...]:
            return tuple(int(x) for x in b.parent.name.split(".") if x.isdigit())

        return max(found, key=version)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and shutil.which("initdb"):
        return Path(pg_ctl).parent
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI fail: CI must run the Postgres tests, never skip them quietly
    (.ci/run installs Debian's postgresql when /usr/lib/postgresql/*/bin/pg_ctl is missing)."""
    missing(f"no Postgres: {reason}")
    raise AssertionError("unreachable: missing() fails or skips")


@dataclass
class PostgresServer:
    bindir: Path
    root: Path  # data/, the socket and the log
    port: int
    run_as: list[str]  # the prefix that runs a command as a non-root user
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "pagelab") -> str:
        """A SQLAlchemy URL over the unix socket."""
        return f"postgresql+psycopg://{SUPERUSER}@/{dbname}?host={self.root}&port={self.port}"

    def pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """One statement outside a transaction (CREATE / DROP DATABASE)."""
        with connect(self.url(dbname)) as conn:
            conn.execute(sql)

    def new_database(self) -> str:
        """A fresh, empty database; its name."""
        name = f"pagelab_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # WITH (FORCE): a test's engine may still hold pooled connections
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        try:
            return (self.root / "log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        done = self.pg_ctl(
            "stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S), timeout=STOP_TIMEOUT_S + 10
        )
        if done.returncode != 0 and (self.data / "postmaster.pid").exists():
            # our own postmaster (its pid is the first line of postmaster.pid) did not stop
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def connect(url: str, **kwargs: Any) -> Any:
    """A raw psycopg connection (autocommit) to the database of a SQLAlchemy URL: what a
    test does behind the store's back."""
    import psycopg

    u = make_url(url)

    def query(key: str) -> str | None:
        value = u.query.get(key)
        return value[0] if isinstance(value, tuple) else value

    return psycopg.connect(
        dbname=u.database,
        user=u.username,
        host=query("host") or u.host,
        port=query("port") or u.port,
        autocommit=True,
        connect_timeout=10,
        **kwargs,
    )


def _free_port() -> int:
    # no TCP listener is opened: the port only names the socket (.s.PGSQL.<port>), but a
    # free one keeps the server's shared memory keys apart from any other on the machine
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        unavailable("no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on the PATH")
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # Postgres will not run as root
        try:
            owner = pwd.getpwnam(SUPERUSER)
        except KeyError:
            unavailable(f"running as root and there is no {SUPERUSER!r} user to run the server as")
        run_as = ["runuser", "-u", SUPERUSER, "--"]
    # not pytest's tmp_path: the server's user must reach the folder, and the socket's
    # path must stay short (a unix socket's path is at most 107 bytes)
    root = Path(tempfile.mkdtemp(prefix="pagelab-pg-", dir="/tmp" if owner else None))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(bindir, root, _free_port(), run_as)
    started = False
    try:
        init = subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                SUPERUSER,
                "--auth=trust",  # only this socket, in a folder only the server's user reaches
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        options = (
            f"-k {root} -c listen_addresses='' -p {server.port}"
            # a throwaway server: nothing here must survive a power cut
            " -c fsync=off -c full_page_writes=off"
        )
        started = True  # from here on, stop it whatever happens
        start = server.pg_ctl(
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-l",
            str(root / "log"),
            "-o",
            options,
            timeout=START_TIMEOUT_S + 10,
        )
        if start.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{server.log()}"
            )
        server.execute('CREATE DATABASE "pagelab"')
        yield server
    finally:
        try:
            if started:
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
