"""Kept manifests on a real nats-server (the builds object store)."""

from __future__ import annotations

from dockyard.contract.events import new_id
from dockyard.state.builds import manifest_object, open_manifest_reader, open_manifest_store
from tests.conftest import Bus


async def test_a_builds_manifests_are_kept_and_read_back(bus: Bus) -> None:
    store = await open_manifest_store(bus.js, "builder")
    reader = await open_manifest_reader(bus.js, "builder")
    build = f"v1-{new_id()[:8]}"
    files = {"Procfile": "web: ./serve\n", "dockyard.toml": "[[release]]\ncommand = 'x'\n"}
    await store.keep("shop", build, files)
    assert await reader.manifest("shop", build) == files
    assert manifest_object("shop", build) == f"shop/{build}/manifest.json"


async def test_a_build_without_kept_manifests_has_none(bus: Bus) -> None:
    reader = await open_manifest_reader(bus.js, "builder")
    assert await reader.manifest("shop", f"v9-{new_id()[:8]}") == {}
