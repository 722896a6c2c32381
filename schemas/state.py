"""Records kept in the JetStream KV `dockyard_state` bucket, shared by the services."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from dockyard.schemas.events import DeploySpec, InstanceRef


def live_key(app: str) -> str:
    """Key of an app's live release record (written by the router after a confirmed switch)."""
    return f"live.{app}"


def pending_key(app: str) -> str:
    """Key marking an app whose first deploy is running (its host answers 503)."""
    return f"pending.{app}"


def release_counter_key(app: str) -> str:
    """Key of an app's last allocated release number."""
    return f"releases.{app}"


def queue_key(app: str) -> str:
    """Key of an app's queue of waiting deployments."""
    return f"queue.{app}"


class LiveRelease(msgspec.Struct, frozen=True, kw_only=True):
    """The release an app's host routes to."""

    app: str
    release: int
    deployment_id: str
    spec: DeploySpec
    instances: list[InstanceRef]
    switched_at: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """An app's first deploy is running; nothing to route to yet."""

    app: str
    deployment_id: str


class QueueEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment waiting for the app's lock."""

    deployment_id: str
    requested_at: datetime


class Queue(msgspec.Struct, frozen=True, kw_only=True):
    """An app's deployments, in request order, waiting for the lock."""

    entries: list[QueueEntry] = []
