"""Open the SQL store from a URL: SQLite under the data dir by default, or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session, create_engine

log = structlog.get_logger()


class StoreError(Exception):
    """Base of every store error."""


class StoreURLError(StoreError):
    """A database URL the store cannot use."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"cannot use database URL {url!r}: {problem}")
        self.url = url
        self.problem = problem


class MigrationError(StoreError):
    """A migration failed or the database is newer than this code."""

    def __init__(self, version: int, problem: str) -> None:
        super().__init__(f"migration {version}: {problem}")
        self.version = version
        self.problem = problem


class NotFoundError(StoreError):
    """A record asked for by key does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class BadQueryError(StoreError):
    """A query parameter that cannot be used."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"bad {name}: {problem}")
        self.name = name
        self.problem = problem


def normalize_url(url: str) -> str:
    """Pick the psycopg (v3) driver for plain postgres URLs, as DOCKYARD_DATABASE_URL may hold."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass
class Store:
    """An open store: the engine, and sessions on it."""

    engine: Engine
    url: str

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that is closed afterwards (the caller commits)."""
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the HTTP threads read while the projection writes; busy_timeout waits out locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def private_file(path: Path) -> None:
    """Create the file 0600 (and its directory) before SQLite does, with the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for extra in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            extra.chmod(0o600)


def open_store(url: str) -> Store:
    """Open (not migrate) the store at url; SQLite files get their directory created."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreURLError(url, str(exc)) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql":
        engine = create_engine(url, pool_pre_ping=True)
    else:
        raise StoreURLError(url, f"unsupported backend {backend!r} (use sqlite or postgresql)")
    log.info("store opened", backend=backend, database=parsed.database)
    return Store(engine=engine, url=url)
