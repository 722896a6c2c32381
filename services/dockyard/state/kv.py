"""The few KV operations every door is made of: read unless deleted, compare-and-set, list keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

T = TypeVar("T")
CAS_TRIES = 50


class Busy(Exception):
    """A key changed under us too many times in a row."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"{bucket}/{key} changed concurrently {CAS_TRIES} times; try again")
        self.bucket = bucket
        self.key = key


def stream_of(bucket: str) -> str:
    """The JetStream stream behind a KV bucket (the KV naming convention, ADR-8)."""
    return f"KV_{bucket}"


def subject_prefix(bucket: str) -> str:
    """The subject prefix of a bucket's keys (ADR-8)."""
    return f"$KV.{bucket}."


async def read(kv: KeyValue, key: str) -> tuple[bytes | None, int]:
    """The value under key and its revision; (None, 0) when absent or deleted."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return None, 0
    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
        return None, entry.revision or 0
    return entry.value, entry.revision or 0


async def write(kv: KeyValue, key: str, value: bytes, revision: int) -> bool:
    """Create (revision 0) or update at revision; False when someone wrote first."""
    try:
        if revision == 0:
            await kv.create(key, value)
        else:
            await kv.update(key, value, last=revision)
    except KeyWrongLastSequenceError:
        return False
    return True


async def change(kv: KeyValue, bucket: str, key: str, decode: Callable[[bytes | None], T],
                 fn: Callable[[T], T], encode: Callable[[T], bytes]) -> tuple[T, T]:
    """Apply fn to the value under key atomically (optimistic concurrency); (before, after)."""
    for _ in range(CAS_TRIES):
        raw, revision = await read(kv, key)
        before = decode(raw)
        after = fn(before)
        if after == before:
            return before, after
        if await write(kv, key, encode(after), revision):
            return before, after
    raise Busy(bucket, key)


async def history(kv: KeyValue, key: str) -> list[bytes]:
    """Every kept value of a key, oldest first (deletes left out)."""
    try:
        entries = await kv.history(key)
    except NoKeysError:
        return []
    return [e.value for e in entries if e.value and e.operation not in (KV_DEL, KV_PURGE)]


async def purge(js: JetStreamContext, bucket: KeyValue, name: str, *patterns: str) -> list[str]:
    """Purge every key matching the patterns (history too); the keys purged (none: a no-op)."""
    found = [key for pattern in patterns for key in await keys(js, name, pattern)]
    for key in found:
        await bucket.purge(key)
    return found


async def keys(js: JetStreamContext, bucket: str, pattern: str = ">") -> list[str]:
    """Keys of a bucket matching a subject pattern, as the server lists them (sorted)."""
    # Asked of the stream, not a watcher: a KV watcher's "no more values" marker can come
    # before values already in flight (nats-py 2.16), which would drop keys.
    prefix = subject_prefix(bucket)
    info = await js.stream_info(stream_of(bucket), subjects_filter=f"{prefix}{pattern}")
    return sorted(s.removeprefix(prefix) for s in (info.state.subjects or {}))


async def read_all(js: JetStreamContext, bucket: KeyValue, name: str,
                   pattern: str = ">") -> list[bytes]:
    """The values of every key matching a pattern (deleted ones left out), in key order, read
    concurrently: one round trip's wait for the lot, not one per key (a router restart reads
    every app's route)."""
    found = await asyncio.gather(*(read(bucket, key) for key in await keys(js, name, pattern)))
    return [raw for raw, _ in found if raw]


@contextlib.asynccontextmanager
async def updates(bucket: KeyValue) -> AsyncIterator[AsyncIterator[tuple[str, bytes | None]]]:
    """Yields (key, value) for the last value of every key, then for every change, in the
    bucket's order, for as long as the block runs; the value is None when the key was deleted
    or purged. Applying them in order ends at the bucket's state."""
    watcher = await bucket.watchall(include_history=False)

    async def entries() -> AsyncIterator[tuple[str, bytes | None]]:
        async for entry in watcher:
            if entry is None:  # the end of the first values: nothing to apply
                continue
            deleted = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
            yield entry.key, None if deleted else entry.value

    try:
        yield entries()
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
