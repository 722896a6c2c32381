"""Uploaded source archives, in the `sources` object store,
so a builder on any host can read them."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectDeletedError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from dockyard.contract import subjects
from dockyard.state.door import Door, Grant


class SourceMissing(LookupError):
    """No archive of that name was uploaded."""

    def __init__(self, name: str) -> None:
        super().__init__(f"source archive {name!r} not found in the object store")
        self.name = name


def object_name(app: str, deployment_id: str) -> str:
    """Where a deployment's source archive is stored."""
    return f"{app}/{deployment_id}.tar.gz"


class SourceReader(Protocol):
    """Reads uploaded archives."""

    async def fetch(self, name: str, into: Path) -> Path:
        """Write an archive to a local file (streamed); SourceMissing if there is none."""


class SourceUploads(Protocol):
    """Uploads archives."""

    async def upload(self, app: str, deployment_id: str, data: bytes) -> str:
        """Store a deployment's archive; its object name."""


class SourceKeeper(SourceReader, Protocol):
    """Reads and forgets uploaded archives (the builder)."""

    async def forget(self, app: str, keep: Collection[str] = ()) -> int:
        """Delete every uploaded archive of an app but those named in keep; how many."""


async def forget_objects(store: ObjectStore, prefix: str, keep: Collection[str] = ()) -> int:
    """Delete every object whose name starts with prefix, but those in keep; how many."""
    try:
        infos = await store.list(ignore_deletes=True)
    except NotFoundError:  # an empty store
        return 0
    gone = 0
    for info in infos:
        if info.name.startswith(prefix) and not info.deleted and info.name not in keep:
            with contextlib.suppress(ObjectNotFoundError, ObjectDeletedError, NotFoundError):
                await store.delete(info.name)
                gone += 1
    return gone


class NatsSources:
    """Source archives in the `sources` object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def fetch(self, name: str, into: Path) -> Path:
        """Write an archive to a local file; SourceMissing if there is none."""
        try:
            with into.open("wb") as out:  # noqa: ASYNC230 (a local file the chunks go into)
                await self.store.get(name, writeinto=out)
        except (ObjectNotFoundError, ObjectDeletedError, NotFoundError):
            into.unlink(missing_ok=True)  # noqa: ASYNC240 (the partial local file)
            raise SourceMissing(name) from None
        return into

    async def upload(self, app: str, deployment_id: str, data: bytes) -> str:
        """Store a deployment's archive; its object name."""
        name = object_name(app, deployment_id)
        await self.store.put(name, data)
        return name

    async def forget(self, app: str, keep: Collection[str] = ()) -> int:
        """Delete every uploaded archive of an app but those named in keep."""
        return await forget_objects(self.store, f"{app}/", keep)


async def open_source_reader(js: JetStreamContext, service: str) -> SourceReader:
    """Source archives, read-only."""
    del service
    return NatsSources(await js.object_store(subjects.OBJ_SOURCES))


async def open_source_keeper(js: JetStreamContext, service: str) -> SourceKeeper:
    """Source archives, readable and deletable."""
    del service
    return NatsSources(await js.object_store(subjects.OBJ_SOURCES))


async def open_source_uploads(js: JetStreamContext, service: str) -> SourceUploads:
    """Source archives, upload only."""
    del service
    return NatsSources(await js.object_store(subjects.OBJ_SOURCES))


READER = Door(SourceReader, open_source_reader, (Grant("obj", subjects.OBJ_SOURCES, "read"),))
KEEPER = Door(SourceKeeper, open_source_keeper, (Grant("obj", subjects.OBJ_SOURCES, "write"),))
UPLOADS = Door(SourceUploads, open_source_uploads,
               (Grant("obj", subjects.OBJ_SOURCES, "write"),))
