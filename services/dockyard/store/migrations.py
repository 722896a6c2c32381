"""A tiny ordered migration runner: each migration runs once, recorded in `schema_version`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select, text
from sqlalchemy.engine import Connection, Engine

from dockyard.store.db import MigrationError
from dockyard.store.models import TABLES

log = structlog.get_logger()

_meta = MetaData()
schema_version = Table(
    "schema_version",
    _meta,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String, nullable=False),
    Column("applied_at", DateTime, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema change, applied inside the transaction that records it."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    for table in TABLES:
        table.create(conn, checkfirst=True)


def _index_deployments_by_app(conn: Connection) -> None:
    # `deployments APP` lists newest first: this index serves that order directly.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_deployment_app_created "
                      "ON deployment (app, created_at)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_applied_event_app_time "
                      "ON applied_event (app, time)"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create tables", _create_tables),
    Migration(2, "index deployments and events by app", _index_deployments_by_app),
)


def current_version(engine: Engine) -> int:
    """The highest applied migration (0 for an empty database)."""
    with engine.connect() as conn:
        schema_version.create(conn, checkfirst=True)
        conn.commit()
        found = conn.execute(select(schema_version.c.version)
                             .order_by(schema_version.c.version.desc()).limit(1)).scalar()
        return int(found or 0)


def migrate(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply every migration not applied yet, in order; returns the resulting version."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise MigrationError(0, f"versions must be unique and increasing, got {versions}")
    version = current_version(engine)
    if migrations and version > migrations[-1].version:
        raise MigrationError(version, f"database is at version {version}, newer than this code "
                                      f"({migrations[-1].version})")
    for m in migrations:
        if m.version <= version:
            continue
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two services starting at once: the second waits, then sees the version row.
                    conn.execute(text("SELECT pg_advisory_xact_lock(7411)"))
                    done = conn.execute(select(schema_version.c.version)
                                        .where(schema_version.c.version == m.version)).first()
                    if done is not None:
                        continue
                m.apply(conn)
                conn.execute(schema_version.insert().values(
                    version=m.version, name=m.name,
                    applied_at=datetime.now(UTC).replace(tzinfo=None)))
        except MigrationError:
            raise
        except Exception as exc:
            raise MigrationError(m.version, f"{m.name} failed: {exc}") from exc
        log.info("migrated", version=m.version, name=m.name)
        version = m.version
    return version
