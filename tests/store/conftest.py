"""Every store test runs twice: on SQLite (the default store) and on PostgreSQL (the
`postgres` fixture: DOCKYARD_TEST_PG or a throwaway server), each on an empty database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from dockyard.store import Store, migrate, open_store
from tests.postgres import Postgres

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def pg_url(postgres: Postgres) -> Iterator[str]:
    """A fresh PostgreSQL database of this module's own (a URL as DOCKYARD_DATABASE_URL takes
    it), dropped afterwards."""
    with postgres.database() as name:
        yield postgres.url(name)


@pytest.fixture(params=BACKENDS)
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An open store with no tables yet, on each backend."""
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'data' / 'dockyard.db'}")
    else:
        s = open_store(request.getfixturevalue("pg_url"))
        # The module's database is shared by its tests: each starts from empty.
        with s.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    yield s
    s.close()


@pytest.fixture
def store(empty_store: Store) -> Store:
    """A migrated store, on each backend."""
    migrate(empty_store.engine)
    return empty_store
