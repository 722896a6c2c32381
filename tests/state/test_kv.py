"""The KV operations every door is made of, on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.events import new_id
from dockyard.state import kv
from tests.conftest import Bus


def key() -> str:
    return f"kvtest-{new_id()[:12]}"


async def test_absent_deleted_and_purged_keys_read_as_none(bus: Bus) -> None:
    bucket = await bus.kv(subjects.KV_HOOKS)
    k = key()
    assert await kv.read(bucket, k) == (None, 0)
    revision = await bucket.put(k, b"v")
    assert await kv.read(bucket, k) == (b"v", revision)
    await bucket.delete(k)
    assert await kv.read(bucket, k) == (None, 0)
    # A deleted key is created again at revision 0.
    assert await kv.write(bucket, k, b"back", 0)
    assert (await kv.read(bucket, k))[0] == b"back"
    await bucket.put(k, b"again")
    await bucket.purge(k)
    assert (await kv.read(bucket, k))[0] is None


async def test_write_creates_at_revision_0_and_updates_only_at_the_current_one(bus: Bus) -> None:
    bucket = await bus.kv(subjects.KV_HOOKS)
    k = key()
    assert await kv.write(bucket, k, b"1", 0)
    assert not await kv.write(bucket, k, b"other", 0)  # someone created it first
    _, revision = await kv.read(bucket, k)
    assert await kv.write(bucket, k, b"2", revision)
    assert not await kv.write(bucket, k, b"stale", revision)
    assert (await kv.read(bucket, k))[0] == b"2"


async def test_change_applies_fn_atomically_and_skips_writing_no_change(bus: Bus) -> None:
    bucket = await bus.kv(subjects.KV_HOOKS)
    k = key()

    def decode(raw: bytes | None) -> int:
        return int(raw or b"0")

    def encode(n: int) -> bytes:
        return str(n).encode()

    assert await kv.change(bucket, "b", k, decode, lambda n: n + 1, encode) == (0, 1)
    _, revision = await kv.read(bucket, k)
    assert await kv.change(bucket, "b", k, decode, lambda n: n, encode) == (1, 1)
    assert (await kv.read(bucket, k))[1] == revision  # nothing written
    # Concurrent changes all land.
    await asyncio.gather(*(kv.change(bucket, "b", k, decode, lambda n: n + 1, encode)
                           for _ in range(10)))
    assert (await kv.read(bucket, k))[0] == b"11"


async def test_a_key_that_keeps_changing_under_us_is_busy(
        bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = await bus.kv(subjects.KV_HOOKS)
    k = key()
    await bucket.put(k, b"0")
    original = kv.write
    attempts = 0

    async def raced(kv_: KeyValue, key_: str, value: bytes, revision: int) -> bool:
        # Another writer gets in between every read and its write.
        nonlocal attempts
        attempts += 1
        await bucket.put(k, b"theirs")
        return await original(kv_, key_, value, revision)

    monkeypatch.setattr(kv, "write", raced)
    with pytest.raises(kv.Busy, match=f"{subjects.KV_HOOKS}/{k} changed concurrently "
                                      f"{kv.CAS_TRIES} times; try again"):
        await kv.change(bucket, subjects.KV_HOOKS, k, lambda raw: raw or b"",
                        lambda v: v + b"!", lambda v: v)
    assert attempts == kv.CAS_TRIES


async def test_history_leaves_deletes_out_oldest_first(bus: Bus) -> None:
    bucket = await bus.kv(subjects.KV_ROUTES)  # the one bucket keeping history
    k = key()
    assert await kv.history(bucket, k) == []
    await bucket.put(k, b"1")
    await bucket.put(k, b"2")
    await bucket.delete(k)
    await bucket.put(k, b"3")
    assert await kv.history(bucket, k) == [b"1", b"2", b"3"]


async def test_keys_lists_a_pattern_sorted(bus: Bus) -> None:
    bucket = await bus.kv(subjects.KV_HOOKS)
    prefix = key()
    for name in ("b", "a", "c.d"):
        await bucket.put(f"{prefix}.{name}", b"x")
    assert await kv.keys(bus.js, subjects.KV_HOOKS, f"{prefix}.*") == [f"{prefix}.a",
                                                                        f"{prefix}.b"]
    assert await kv.keys(bus.js, subjects.KV_HOOKS, f"{prefix}.>") == [
        f"{prefix}.a", f"{prefix}.b", f"{prefix}.c.d"]
    assert await kv.keys(bus.js, subjects.KV_HOOKS, f"{key()}.>") == []


async def test_read_all_gives_every_live_value_of_a_pattern_in_key_order(bus: Bus) -> None:
    bucket = await bus.kv(subjects.KV_HOOKS)
    prefix = key()
    for n in range(300):  # many at once: read concurrently, still every one, in key order
        await bucket.put(f"{prefix}.{n:03d}", f"v{n}".encode())
    await bucket.put(f"{prefix}.gone", b"x")
    await bucket.delete(f"{prefix}.gone")
    await bucket.put(f"{prefix}.purged", b"x")
    await bucket.purge(f"{prefix}.purged")
    await bucket.put(f"{prefix}.deep.key", b"deep")
    found = await kv.read_all(bus.js, bucket, subjects.KV_HOOKS, f"{prefix}.*")
    assert found == [f"v{n}".encode() for n in range(300)]
    assert await kv.read_all(bus.js, bucket, subjects.KV_HOOKS, f"{key()}.>") == []


def test_names_follow_the_kv_convention() -> None:
    assert kv.stream_of("dockyard_locks") == "KV_dockyard_locks"
    assert kv.subject_prefix("dockyard_locks") == "$KV.dockyard_locks."
