"""The SQL store: deployment records projected from the events, and queries over them."""

from dockyard.store.db import (
    BadQueryError,
    MigrationError,
    NotFoundError,
    Store,
    StoreError,
    StoreURLError,
    open_store,
)
from dockyard.store.migrations import migrate
from dockyard.store.projection import apply_event, project

__all__ = ["BadQueryError", "MigrationError", "NotFoundError", "Store", "StoreError",
           "StoreURLError", "apply_event", "migrate", "open_store", "project"]
