"""Each build's manifest files, in the `builds` object store,
so a later release can rebuild its plan."""

from __future__ import annotations

from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectDeletedError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from dockyard.contract import subjects
from dockyard.state.door import Door, Grant
from dockyard.state.sources import forget_objects

_decoder = msgspec.json.Decoder(dict[str, str])


def manifest_object(app: str, build_id: str) -> str:
    """Where a build's manifest files are kept."""
    return f"{app}/{build_id}/manifest.json"


class ManifestReader(Protocol):
    """Reads kept manifests."""

    async def manifest(self, app: str, build_id: str) -> dict[str, str]:
        """The manifest files of a build (empty when none were kept)."""


class ManifestStore(ManifestReader, Protocol):
    """Keeps manifests."""

    async def keep(self, app: str, build_id: str, files: dict[str, str]) -> None:
        """Keep a build's manifest files."""


class ManifestKeeper(ManifestStore, Protocol):
    """Keeps and forgets manifests (the builder)."""

    async def forget(self, app: str) -> int:
        """Delete every kept manifest of an app; how many."""


class NatsManifests:
    """Manifests in the `builds` object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def manifest(self, app: str, build_id: str) -> dict[str, str]:
        """The manifest files of a build (empty when none were kept)."""
        try:
            result = await self.store.get(manifest_object(app, build_id))
        except (ObjectNotFoundError, ObjectDeletedError, NotFoundError):
            return {}
        return _decoder.decode(result.data or b"{}")

    async def keep(self, app: str, build_id: str, files: dict[str, str]) -> None:
        """Keep a build's manifest files."""
        await self.store.put(manifest_object(app, build_id), msgspec.json.encode(files))

    async def forget(self, app: str) -> int:
        """Delete every kept manifest of an app."""
        return await forget_objects(self.store, f"{app}/")


async def open_manifest_store(js: JetStreamContext, service: str) -> ManifestStore:
    """Manifests, writable."""
    del service
    return NatsManifests(await js.object_store(subjects.OBJ_BUILDS))


async def open_manifest_keeper(js: JetStreamContext, service: str) -> ManifestKeeper:
    """Manifests, kept and forgotten (the builder)."""
    del service
    return NatsManifests(await js.object_store(subjects.OBJ_BUILDS))


async def open_manifest_reader(js: JetStreamContext, service: str) -> ManifestReader:
    """Manifests, read-only."""
    return await open_manifest_store(js, service)


STORE = Door(ManifestStore, open_manifest_store, (Grant("obj", subjects.OBJ_BUILDS, "write"),))
KEEPER = Door(ManifestKeeper, open_manifest_keeper, (Grant("obj", subjects.OBJ_BUILDS, "write"),))
READER = Door(ManifestReader, open_manifest_reader, (Grant("obj", subjects.OBJ_BUILDS, "read"),))
