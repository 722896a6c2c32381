"""A PostgreSQL server for the tests: DOCKYARD_TEST_PG if set, else a throwaway cluster of the
session's own (initdb in a temp dir, a free loopback port, stopped and removed afterwards).

No server and no PostgreSQL binaries: the tests that need one fail when CI is set and skip,
saying why, on a user's machine.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from dockyard.bus.embedded import free_port

ENV = "DOCKYARD_TEST_PG"
READY_WITHIN = 60.0


@dataclass(frozen=True)
class Postgres:
    """Where the tests' PostgreSQL answers, as the superuser `postgres` with trust auth."""

    host: str
    port: int
    admin_db: str = "postgres"

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A URL of one database on this server."""
        return f"{driver}://postgres@{self.host}:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        """The database to create and drop others from."""
        return self.url(self.admin_db)

    @contextlib.contextmanager
    def database(self, prefix: str = "dockyard_test") -> Iterator[str]:
        """A fresh database's name, dropped afterwards (whatever is still connected to it)."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Unavailable(RuntimeError):
    """No PostgreSQL to test against, and why."""


def from_env() -> Postgres | None:
    """The server DOCKYARD_TEST_PG names (postgresql://postgres@HOST:PORT/DB), if set."""
    value = os.environ.get(ENV)
    if not value:
        return None
    rest = value.split("://", 1)[-1].split("@", 1)[-1]
    hostport, _, database = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    return Postgres(host=host or "127.0.0.1", port=int(port or 5432),
                    admin_db=database or "postgres")


def binaries() -> Path | None:
    """The directory of initdb and postgres (Debian's layout, or PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(owner: str | None, argv: list[str]) -> list[str]:
    """Run as the cluster's owner: PostgreSQL refuses to run as root."""
    return argv if owner is None else ["runuser", "-u", owner, "--", *argv]


def _wait_ready(pg: Postgres, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while True:
        try:
            with psycopg.connect(pg.admin_url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable("the throwaway PostgreSQL did not start: "
                                  + log.read_text(errors="replace")[-2000:]) from None
            time.sleep(0.1)


@contextlib.contextmanager
def throwaway() -> Iterator[Postgres]:
    """initdb in a temp dir, postgres on a free loopback port; stopped and removed after."""
    bindir = binaries()
    if bindir is None:
        raise Unavailable(f"no PostgreSQL server binaries (initdb) and {ENV} is unset: install "
                          "PostgreSQL (Debian: postgresql) or point DOCKYARD_TEST_PG at a server")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no `postgres` user to run a "
                              "throwaway PostgreSQL as") from None
        owner = "postgres"
    root = Path(tempfile.mkdtemp(prefix="dockyard-pg-"))
    data, log = root / "data", root / "postgres.log"
    if owner is not None:
        shutil.chown(root, owner, owner)
    proc: subprocess.Popen[bytes] | None = None
    try:
        init = subprocess.run(
            _as_owner(owner, [str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                              "--auth=trust", "--no-sync", "-E", "UTF8"]),
            capture_output=True, text=True, timeout=120, check=False)
        if init.returncode != 0:
            raise Unavailable(f"initdb failed: {init.stderr.strip()[-2000:]}")
        pg = Postgres(host="127.0.0.1", port=free_port())
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                _as_owner(owner, [str(bindir / "postgres"), "-D", str(data), "-h", pg.host,
                                  "-p", str(pg.port), "-k", str(root), "-c", "fsync=off",
                                  "-c", "full_page_writes=off", "-c", "max_connections=200"]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_ready(pg, proc, log)
        yield pg
    finally:
        if proc is not None and proc.poll() is None:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for its clients to leave).
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
