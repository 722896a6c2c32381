"""Create (idempotently) the streams, KV buckets and object stores every service relies on."""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from dockyard.schemas import subjects

DAY = 24 * 3600.0
LOCK_LEASE = 30.0

STREAMS = (
    StreamConfig(name=subjects.STREAM_EVENTS, subjects=[subjects.EVT_ALL],
                 storage=StorageType.FILE, max_age=90 * DAY, duplicate_window=300.0),
    StreamConfig(name=subjects.STREAM_COMMANDS, subjects=[subjects.CMD_ALL],
                 storage=StorageType.FILE, max_age=30 * DAY, duplicate_window=300.0),
    StreamConfig(name=subjects.STREAM_LOGS, subjects=[subjects.LOG_ALL],
                 storage=StorageType.FILE, max_age=30 * DAY),
    StreamConfig(name=subjects.STREAM_DLQ, subjects=[subjects.DLQ_ALL],
                 storage=StorageType.FILE, max_age=30 * DAY,
                 retention=RetentionPolicy.LIMITS),
)

BUCKETS = (
    # A lock entry lives as long as its holder refreshes it: the bucket TTL is the lease.
    KeyValueConfig(bucket=subjects.KV_LOCKS, history=1, ttl=LOCK_LEASE, storage=StorageType.FILE),
    # Config keeps history so a hook reads exactly the version its release was made with.
    KeyValueConfig(bucket=subjects.KV_CONFIG, history=64, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.KV_HOOKS, history=8, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.KV_STATE, history=8, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.KV_RUNS, history=1, ttl=30 * DAY, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.KV_CANCEL, history=1, ttl=7 * DAY, storage=StorageType.FILE),
    KeyValueConfig(bucket=subjects.KV_NOTIFY, history=4, storage=StorageType.FILE),
)
OBJECT_STORES = (subjects.OBJ_SOURCES, subjects.OBJ_BUILDS)


@dataclass
class Stores:
    """Handles on the JetStream state every service may use."""

    nc: Client
    js: JetStreamContext
    locks: KeyValue
    config: KeyValue
    hooks: KeyValue
    state: KeyValue
    runs: KeyValue
    cancel: KeyValue
    notify: KeyValue
    sources: ObjectStore
    builds: ObjectStore

    async def close(self) -> None:
        """Close the connection."""
        await self.nc.drain()


async def ensure_topology(js: JetStreamContext) -> None:
    """Create every stream, bucket and object store if missing (safe to call from every service)."""
    for cfg in STREAMS:
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)
    for kv in BUCKETS:
        await js.create_key_value(kv)
    for name in OBJECT_STORES:
        await js.create_object_store(name, ObjectStoreConfig(bucket=name, storage=StorageType.FILE))


async def connect_stores(url: str, name: str = "dockyard") -> Stores:
    """Connect, ensure the topology and return the handles."""
    nc = await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    js = nc.jetstream()
    await ensure_topology(js)
    return Stores(
        nc=nc,
        js=js,
        locks=await js.key_value(subjects.KV_LOCKS),
        config=await js.key_value(subjects.KV_CONFIG),
        hooks=await js.key_value(subjects.KV_HOOKS),
        state=await js.key_value(subjects.KV_STATE),
        runs=await js.key_value(subjects.KV_RUNS),
        cancel=await js.key_value(subjects.KV_CANCEL),
        notify=await js.key_value(subjects.KV_NOTIFY),
        sources=await js.object_store(subjects.OBJ_SOURCES),
        builds=await js.object_store(subjects.OBJ_BUILDS),
    )
