"""The migration runner on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from dockyard.store import MigrationError, Store, StoreURLError, open_store
from dockyard.store.migrations import MIGRATIONS, Migration, current_version, migrate

TABLES = {"app", "release", "deployment", "hook_run", "instance", "route", "delivery",
          "applied_event", "schema_version"}


@pytest.fixture
def store(empty_store: Store) -> Store:
    """Not migrated yet (tests/store/conftest.py): these tests migrate it."""
    return empty_store


def indexes(store: Store, table: str) -> set[str]:
    return {str(i["name"]) for i in inspect(store.engine).get_indexes(table)}


def test_migrate_creates_every_table_and_is_idempotent(store: Store) -> None:
    assert current_version(store.engine) == 0
    assert migrate(store.engine) == MIGRATIONS[-1].version == 2
    assert TABLES <= set(inspect(store.engine).get_table_names())
    assert migrate(store.engine) == 2
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT version, name FROM schema_version ORDER BY version"))
        assert [r[0] for r in rows] == [1, 2]


def test_database_at_version_1_is_upgraded(store: Store) -> None:
    assert migrate(store.engine, MIGRATIONS[:1]) == 1
    assert "ix_deployment_app_created" not in indexes(store, "deployment")
    assert migrate(store.engine) == 2
    assert "ix_deployment_app_created" in indexes(store, "deployment")
    assert "ix_applied_event_app_time" in indexes(store, "applied_event")


def test_a_new_migration_runs_once(store: Store) -> None:
    calls: list[int] = []

    def add_column(conn: Connection) -> None:
        calls.append(1)
        conn.execute(text("ALTER TABLE app ADD COLUMN owner VARCHAR"))

    extended = (*MIGRATIONS, Migration(3, "app owner", add_column))
    migrate(store.engine)
    assert migrate(store.engine, extended) == 3
    assert migrate(store.engine, extended) == 3
    assert calls == [1]
    assert "owner" in {c["name"] for c in inspect(store.engine).get_columns("app")}


def test_failed_migration_leaves_the_version(store: Store) -> None:
    def broken(conn: Connection) -> None:
        conn.execute(text("CREATE INDEX ix_bad ON no_such_table (x)"))

    migrate(store.engine)
    with pytest.raises(MigrationError) as err:
        migrate(store.engine, (*MIGRATIONS, Migration(3, "broken", broken)))
    assert err.value.version == 3
    assert current_version(store.engine) == 2


def test_database_newer_than_the_code_is_refused(store: Store) -> None:
    migrate(store.engine)
    with pytest.raises(MigrationError, match="newer"):
        migrate(store.engine, MIGRATIONS[:1])


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(StoreURLError):
        open_store("mysql://root@localhost/x")
    with pytest.raises(StoreURLError):
        open_store("not a url")
