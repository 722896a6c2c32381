"""Records kept in the KV buckets, shared by the services that read and write them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec

from dockyard.contract.events import DeploySpec, FailureData, InstanceRef, ReleaseFigures


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


class Maintenance(msgspec.Struct, frozen=True, kw_only=True):
    """Whether an app's host answers a maintenance page (503) instead of its live release."""

    app: str
    enabled: bool = False
    # When it was last turned on or off; None for an app never put in maintenance.
    since: datetime | None = None
    message: str | None = None


RolloutStage = Literal["canary", "watch"]
RolloutAction = Literal["promote", "abort"]


class RolloutProgress(msgspec.Struct, frozen=True, kw_only=True):
    """An app's rollout in progress, as the router running it says (key `state.<app>`): a
    canary's step or the watch window after the switch, with both releases' last figures."""

    app: str
    deployment_id: str
    release: int
    previous_release: int
    stage: RolloutStage
    step: int = 0  # the canary's step (1-based); 0 in the watch window
    steps: int = 0
    percent: int = 100  # the new release's share of requests
    until: datetime | None = None  # when the step or the window ends
    new: ReleaseFigures | None = None  # as the router last judged them
    old: ReleaseFigures | None = None
    updated: datetime | None = None


class RolloutOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An operator's order to a rollout in progress (key `order.<app>`, the cli and the api):
    promote it now, or abort it (every request back to the old release)."""

    app: str
    deployment_id: str
    action: RolloutAction
    at: datetime | None = None


class QueueEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment waiting for the app's lock."""

    deployment_id: str
    requested_at: datetime


class Queue(msgspec.Struct, frozen=True, kw_only=True):
    """An app's deployments, in request order, waiting for the lock."""

    entries: list[QueueEntry] = []


DeliveryStatus = Literal["pending", "delivered", "failed"]


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one POST gave: an HTTP status, or an error when no response came."""

    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the sink accepted the event (any 2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300

    def describe(self) -> str:
        """A short reason for logs and NotificationFailed."""
        if self.error is not None:
            return self.error
        return f"HTTP {self.status_code}"


class DeliveryState(msgspec.Struct, frozen=True, kw_only=True):
    """Where delivering one event to one sink stands (kept in the deliveries bucket)."""

    attempts: int = 0
    status: DeliveryStatus = "pending"
    next_at: float = 0.0
    last: AttemptResult | None = None


class InFlight(msgspec.Struct, frozen=True, kw_only=True):
    """An app's deploy between its build and its end: the phase now due and its deadline (the
    builder's watchdog fails the deploy past it)."""

    app: str
    deployment_id: str
    release: int
    phase: str
    since: datetime
    deadline: datetime
    spec: DeploySpec | None = None
    # Set once the deploy failed: on-failure's deadline reports it, not a new reason.
    failure: FailureData | None = None


class TimedOut(msgspec.Struct, frozen=True, kw_only=True):
    """A deploy the watchdog ended: late events of its phases must not carry it on."""

    app: str
    deployment_id: str
    release: int
    phase: str
    reason: str
