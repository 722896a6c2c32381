"""App config on a real nats-server: numbered versions per app, each kept."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dockyard.contract import subjects
from dockyard.contract.events import new_id
from dockyard.state import kv
from dockyard.state.config import UnknownVersion, Versioned, applied, open_config_store
from tests.conftest import Bus


def app() -> str:
    return f"cfg-{new_id()[:10]}"


async def test_each_app_numbers_its_versions_on_its_own(bus: Bus) -> None:
    store = await open_config_store(bus.js, "cli")
    a, b = app(), app()
    assert await store.current(a) == Versioned()
    assert (await store.change(a, {"A": "1"}, [])).version == 1
    assert (await store.change(b, {"X": "1"}, [])).version == 1
    assert (await store.change(a, {"B": "2"}, [])).version == 2
    assert (await store.change(a, {}, ["A"])).version == 3
    assert (await store.change(b, {"X": "2"}, [])).version == 2
    assert await store.current(a) == Versioned(version=3, values={"B": "2"})
    assert await store.current(b) == Versioned(version=2, values={"X": "2"})


async def test_an_old_version_reads_as_it_was(bus: Bus) -> None:
    store = await open_config_store(bus.js, "cli")
    a = app()
    await store.change(a, {"A": "1", "B": "1"}, [])
    await store.change(a, {"A": "2"}, ["B"])
    assert await store.at_version(a, 1) == {"A": "1", "B": "1"}
    assert await store.at_version(a, 2) == {"A": "2"}
    assert await store.at_version(a, 0) == {}
    with pytest.raises(UnknownVersion) as unknown:
        await store.at_version(a, 3)
    assert (unknown.value.app, unknown.value.version) == (a, 3)
    assert str(unknown.value) == f"{a} has no config version 3"


async def test_a_writer_stopped_between_head_and_snapshot_is_finished_by_the_reader(
        bus: Bus) -> None:
    store = await open_config_store(bus.js, "hook-runner")
    bucket = await bus.kv(subjects.KV_CONFIG)
    a = app()
    await store.change(a, {"A": "1"}, [])
    # The writer set the head to version 2, then stopped before writing v2's snapshot.
    head = applied(await store.current(a), {"A": "2"}, [])
    await bucket.put(a, msgspec.json.encode(head))
    assert (await kv.read(bucket, f"{a}.v2"))[0] is None

    assert await store.at_version(a, 2) == {"A": "2"}
    assert (await kv.read(bucket, f"{a}.v2"))[0] is not None
    assert await store.at_version(a, 1) == {"A": "1"}


async def test_concurrent_changes_all_land_with_distinct_versions(bus: Bus) -> None:
    store = await open_config_store(bus.js, "cli")
    a = app()
    results = await asyncio.gather(*(store.change(a, {f"K{n}": str(n)}, []) for n in range(10)))
    assert sorted(r.version for r in results) == list(range(1, 11))
    assert await store.current(a) == Versioned(version=10,
                                               values={f"K{n}": str(n) for n in range(10)})
    for result in results:
        assert await store.at_version(a, result.version) == result.values


async def test_forget_removes_every_version(bus: Bus) -> None:
    store = await open_config_store(bus.js, "cli")
    a, kept = app(), app()
    await store.change(a, {"A": "1"}, [])
    await store.change(a, {"A": "2"}, [])
    await store.change(kept, {"A": "1"}, [])
    await store.forget(a)
    assert await store.current(a) == Versioned()
    bucket = await bus.kv(subjects.KV_CONFIG)
    for snapshot in (f"{a}.v1", f"{a}.v2"):
        assert (await kv.read(bucket, snapshot))[0] is None
    assert (await store.current(kept)).version == 1
    # Versions start over, and an old snapshot cannot be read back.
    assert (await store.change(a, {"B": "1"}, [])).version == 1
    with pytest.raises(UnknownVersion):
        await store.at_version(a, 2)


def test_a_change_sorts_the_values_and_counts_on() -> None:
    head = Versioned(version=4, values={"B": "1", "A": "1"})
    assert applied(head, {"C": "3"}, ["B", "MISSING"]) == Versioned(
        version=5, values={"A": "1", "C": "3"})
    assert list(applied(head, {}, []).values) == ["A", "B"]
