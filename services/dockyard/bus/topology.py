"""The streams, KV buckets and object stores Dockyard relies on, created only by provisioning.

Services never create or change them (`dockyard up` provisions its embedded bus; `dockyard bus
init` provisions any other): they only use them.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import BadRequestError

from dockyard.contract import subjects
from dockyard.state.locks import LEASE

DAY = 24 * 3600.0
# A mirror of DOCKYARD_EVENTS where readers (the CLI, outside subscribers) make their ordered
# consumers: an ephemeral consumer request names its consumer in its body and would update a
# durable of that name, so readers never get to create consumers where the services' live.
STREAM_FEED = "DOCKYARD_FEED"
# What DOCKYARD_APPLOGS keeps of the instances' output: a week, 1 GiB, the last 10,000 lines of
# each instance (the oldest go first).
APPLOG_MAX_AGE = 7 * DAY
APPLOG_MAX_BYTES = 1024 * 1024 * 1024
APPLOG_LINES_PER_INSTANCE = 10_000


def streams(replicas: int = 1) -> tuple[StreamConfig, ...]:
    """The five streams and the readers' mirror of the events."""
    file = StorageType.FILE
    return (
        StreamConfig(name=subjects.STREAM_EVENTS, subjects=[subjects.EVT_ALL], storage=file,
                     num_replicas=replicas, max_age=90 * DAY, duplicate_window=300.0),
        StreamConfig(name=subjects.STREAM_COMMANDS, subjects=[subjects.CMD_ALL], storage=file,
                     num_replicas=replicas, max_age=30 * DAY, duplicate_window=300.0),
        StreamConfig(name=subjects.STREAM_LOGS, subjects=[subjects.LOG_ALL], storage=file,
                     num_replicas=replicas, max_age=30 * DAY),
        # The instances' output: the last lines of each instance, a week at most, bounded.
        StreamConfig(name=subjects.STREAM_APPLOGS, subjects=[subjects.APPLOG_ALL], storage=file,
                     num_replicas=replicas, max_age=APPLOG_MAX_AGE, max_bytes=APPLOG_MAX_BYTES,
                     max_msgs_per_subject=APPLOG_LINES_PER_INSTANCE, duplicate_window=120.0),
        StreamConfig(name=subjects.STREAM_DLQ, subjects=[subjects.DLQ_ALL], storage=file,
                     num_replicas=replicas, max_age=30 * DAY, retention=RetentionPolicy.LIMITS),
        StreamConfig(name=STREAM_FEED, mirror=StreamSource(name=subjects.STREAM_EVENTS),
                     storage=file, num_replicas=replicas, max_age=90 * DAY),
    )


def buckets(replicas: int = 1) -> tuple[KeyValueConfig, ...]:
    """One KV bucket per piece of state (a permission names a bucket)."""

    def kv(name: str, history: int = 1, ttl: float | None = None) -> KeyValueConfig:
        return KeyValueConfig(bucket=name, history=history, ttl=ttl, storage=StorageType.FILE,
                              replicas=replicas, direct=True)

    return (
        # A lock entry lives as long as its holder refreshes it: the bucket TTL is the lease.
        kv(subjects.KV_LOCKS, ttl=LEASE),
        kv(subjects.KV_CANCEL, ttl=7 * DAY),
        kv(subjects.KV_STEPS, ttl=30 * DAY),
        kv(subjects.KV_CONFIG),
        kv(subjects.KV_HOOKS),
        # History: the live records of the releases before, for artifacts and the CLI.
        kv(subjects.KV_ROUTES, history=16),
        kv(subjects.KV_QUEUE),
        kv(subjects.KV_RELEASES),
        kv(subjects.KV_SINKS),
        kv(subjects.KV_DELIVERIES, ttl=30 * DAY),
        # Where each release's instances run, as the scheduler started them: the router routes
        # only to these.
        kv(subjects.KV_PLACEMENTS, ttl=30 * DAY),
        # Which apps' hosts answer a maintenance page (written by the cli and the api, followed
        # by the router).
        kv(subjects.KV_MAINTENANCE),
        # Each app's deploy in flight and its phase's deadline; the deploys the watchdog ended.
        kv(subjects.KV_INFLIGHT, ttl=30 * DAY),
        # How many instances of each process type an app runs (written by the scheduler on a
        # scale, read by every later deploy's start phase).
        kv(subjects.KV_FORMATION),
        # Each app's rollout in progress (the router's `state.<app>`) and the operator's order
        # to it (`order.<app>`, the cli and the api).
        kv(subjects.KV_ROLLOUTS, ttl=7 * DAY),
    )


OBJECT_STORES = (subjects.OBJ_SOURCES, subjects.OBJ_BUILDS)


def stream_names() -> tuple[str, ...]:
    """Every stream provisioning makes, buckets' and stores' included."""
    return (*(cfg.name or "" for cfg in streams()), *(f"KV_{kv.bucket}" for kv in buckets()),
            *(f"OBJ_{name}" for name in OBJECT_STORES))


async def ensure_topology(js: JetStreamContext, replicas: int = 1) -> None:
    """Create every stream, bucket and object store, or bring its config up to date."""
    for cfg in streams(replicas):
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)
    for kv in buckets(replicas):
        await js.create_key_value(kv)
    for name in OBJECT_STORES:
        await js.create_object_store(name, ObjectStoreConfig(bucket=name, storage=StorageType.FILE,
                                                             replicas=replicas))


async def provision(nc: Client, replicas: int = 1) -> None:
    """Provision the topology over an (admin) connection."""
    await ensure_topology(nc.jetstream(), replicas)
