"""Every event and command on the bus: tagged msgspec structs with the CloudEvents envelope."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar, Literal, Union

import msgspec

from dockyard.schemas import subjects
from dockyard.schemas.plan import Plan

Status = Literal[
    "queued",
    "building",
    "releasing",
    "starting",
    "postdeploy",
    "switching",
    "succeeded",
    "build-error",
    "release-error",
    "start-error",
    "hook-error",
    "switch-error",
    "cancelled",
]
FAILED_STATUSES = ("build-error", "release-error", "start-error", "hook-error", "switch-error",
                   "cancelled")
TAIL_LINES = 100


def _now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random identifier."""
    return uuid.uuid4().hex


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of everything published; `type` is the CloudEvents type and the decoding tag."""

    @property
    def type(self) -> str:
        """The CloudEvents type (the msgspec tag), e.g. `dockyard.hook.succeeded`."""
        return type_of(self.__class__)


# ---------------------------------------------------------------- commands


class DeployRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.deploy"):
    """Ask for a deploy: of an uploaded source archive, or of the live build with new config."""

    deployment_id: str
    app: str
    kind: Literal["source", "config"] = "source"
    source_object: str | None = None
    runtime: str | None = None
    requested_at: datetime = msgspec.field(default_factory=_now)
    reason: str = ""

    subject: ClassVar[str] = subjects.CMD_DEPLOY


class CancelRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.cancel"):
    """Ask to cancel a queued or running deployment."""

    deployment_id: str
    app: str
    reason: str = "cancelled by user"

    subject: ClassVar[str] = subjects.CMD_CANCEL


# ---------------------------------------------------------------- events


class InstanceRef(msgspec.Struct, frozen=True, kw_only=True):
    """A running instance of one process type of one release."""

    id: str
    process: str
    release: int
    host: str = "127.0.0.1"
    port: int | None = None


class DeploySpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a deploy deploys: the build artifact, its plan and the config version (never values)."""

    runtime: str
    build_id: str
    artifact: str
    plan: Plan
    config_version: int = 0
    kind: Literal["source", "config"] = "source"
    build_artifact: str = ""  # the artifact as built, before predeploy's changes were committed


class Event(Message, frozen=True, kw_only=True):
    """CloudEvents envelope shared by every event."""

    id: str
    source: str
    subject: str
    time: datetime = msgspec.field(default_factory=_now)
    specversion: str = "1.0"
    deployment_id: str
    release: int = 0

    phase: ClassVar[str] = ""
    outcome: ClassVar[str] = ""

    @property
    def app(self) -> str:
        """The app the event is about (the CloudEvents `subject`)."""
        return self.subject

    def nats_subject(self) -> str:
        """Where this event is published."""
        return subjects.event(self.subject, self.phase, self.outcome)


class Failure(Event, frozen=True, kw_only=True):
    """Fields every failure carries."""

    status: Status
    reason: str
    exit_code: int | None = None
    tail: list[str] = []
    command: str | None = None
    spec: DeploySpec | None = None


class DeployQueued(Event, frozen=True, kw_only=True, tag="dockyard.deploy.queued"):
    """A deploy request was accepted and waits for its turn."""

    kind: str = "source"
    phase: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "queued"


class BuildStarted(Event, frozen=True, kw_only=True, tag="dockyard.build.started"):
    """The deploy holds the app's lock and its build began."""

    kind: str = "source"
    phase: ClassVar[str] = "build"
    outcome: ClassVar[str] = "started"


class BuildSucceeded(Event, frozen=True, kw_only=True, tag="dockyard.build.succeeded"):
    """The artifact exists and the plan was built."""

    spec: DeploySpec
    phase: ClassVar[str] = "build"
    outcome: ClassVar[str] = "succeeded"


class BuildFailed(Failure, frozen=True, kw_only=True, tag="dockyard.build.failed"):
    """The build or the manifest failed."""

    phase: ClassVar[str] = "build"
    outcome: ClassVar[str] = "failed"


class ReleaseStarted(Event, frozen=True, kw_only=True, tag="dockyard.release.started"):
    """Predeploy and release commands began."""

    spec: DeploySpec
    phase: ClassVar[str] = "release"
    outcome: ClassVar[str] = "started"


class ReleaseSucceeded(Event, frozen=True, kw_only=True, tag="dockyard.release.succeeded"):
    """Every predeploy and release command succeeded (artifact includes predeploy's changes)."""

    spec: DeploySpec
    phase: ClassVar[str] = "release"
    outcome: ClassVar[str] = "succeeded"


class ReleaseFailed(Failure, frozen=True, kw_only=True, tag="dockyard.release.failed"):
    """A predeploy or release command failed; no instance was started."""

    phase: ClassVar[str] = "release"
    outcome: ClassVar[str] = "failed"


class StartStarted(Event, frozen=True, kw_only=True, tag="dockyard.start.started"):
    """The scheduler began starting the new release's instances."""

    spec: DeploySpec
    phase: ClassVar[str] = "start"
    outcome: ClassVar[str] = "started"


class StartSucceeded(Event, frozen=True, kw_only=True, tag="dockyard.start.succeeded"):
    """Every new instance is healthy and not yet routed."""

    spec: DeploySpec
    instances: list[InstanceRef]
    phase: ClassVar[str] = "start"
    outcome: ClassVar[str] = "succeeded"


class StartFailed(Failure, frozen=True, kw_only=True, tag="dockyard.start.failed"):
    """An instance did not become healthy; the new instances were removed."""

    phase: ClassVar[str] = "start"
    outcome: ClassVar[str] = "failed"


class HookStarted(Event, frozen=True, kw_only=True, tag="dockyard.hook.started"):
    """Postdeploy commands began (new instances healthy, not routed)."""

    spec: DeploySpec
    instances: list[InstanceRef]
    phase: ClassVar[str] = "hook"
    outcome: ClassVar[str] = "started"


class HookSucceeded(Event, frozen=True, kw_only=True, tag="dockyard.hook.succeeded"):
    """Every postdeploy command succeeded: the gate is open, the router may switch."""

    spec: DeploySpec
    instances: list[InstanceRef]
    phase: ClassVar[str] = "hook"
    outcome: ClassVar[str] = "succeeded"


class HookFailed(Failure, frozen=True, kw_only=True, tag="dockyard.hook.failed"):
    """A postdeploy command failed; traffic stays on the old release."""

    phase: ClassVar[str] = "hook"
    outcome: ClassVar[str] = "failed"


class TrafficSwitched(Event, frozen=True, kw_only=True, tag="dockyard.traffic.switched"):
    """The proxy confirmed it now routes the app's host to the new instances."""

    spec: DeploySpec
    instances: list[InstanceRef]
    previous_release: int | None = None
    phase: ClassVar[str] = "traffic"
    outcome: ClassVar[str] = "switched"


class TrafficFailed(Failure, frozen=True, kw_only=True, tag="dockyard.traffic.failed"):
    """The proxy refused the new configuration; the old routes stay."""

    phase: ClassVar[str] = "traffic"
    outcome: ClassVar[str] = "failed"


class AfterSwitchSucceeded(Event, frozen=True, kw_only=True, tag="dockyard.afterswitch.succeeded"):
    """Every after-switch command succeeded."""

    spec: DeploySpec
    phase: ClassVar[str] = "afterswitch"
    outcome: ClassVar[str] = "succeeded"


class AfterSwitchFailed(Failure, frozen=True, kw_only=True, tag="dockyard.afterswitch.failed"):
    """An after-switch command failed; traffic stays on the new release."""

    phase: ClassVar[str] = "afterswitch"
    outcome: ClassVar[str] = "failed"


class RetireSucceeded(Event, frozen=True, kw_only=True, tag="dockyard.retire.succeeded"):
    """Old instances were drained and stopped."""

    stopped: list[str] = []
    phase: ClassVar[str] = "retire"
    outcome: ClassVar[str] = "succeeded"


class DeployAborted(Failure, frozen=True, kw_only=True, tag="dockyard.deploy.aborted"):
    """New instances of a failed deploy are gone; on-failure commands come next."""

    phase: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "aborted"


class DeploySucceeded(Event, frozen=True, kw_only=True, tag="dockyard.deploy.succeeded"):
    """The deploy ended: the new release serves."""

    status: Status = "succeeded"
    phase: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "succeeded"


class DeployFailed(Failure, frozen=True, kw_only=True, tag="dockyard.deploy.failed"):
    """The deploy ended failed or cancelled."""

    phase: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "failed"


class CommandStarted(Event, frozen=True, kw_only=True, tag="dockyard.command.started"):
    """One hook command began."""

    hook_phase: str
    label: str
    index: int
    total: int
    command: str
    phase: ClassVar[str] = "command"
    outcome: ClassVar[str] = "started"


class CommandFinished(Event, frozen=True, kw_only=True, tag="dockyard.command.finished"):
    """One hook command ended (exit code -128 after its timeout)."""

    hook_phase: str
    label: str
    index: int
    total: int
    command: str
    exit_code: int
    duration: float
    tail: list[str] = []
    phase: ClassVar[str] = "command"
    outcome: ClassVar[str] = "finished"


class NotificationFailed(Event, frozen=True, kw_only=True, tag="dockyard.notification.failed"):
    """A sink did not accept an event after every attempt."""

    sink: str
    event_id: str
    attempts: int
    reason: str
    phase: ClassVar[str] = "notification"
    outcome: ClassVar[str] = "failed"


class NotificationDelivered(Event, frozen=True, kw_only=True,
                            tag="dockyard.notification.delivered"):
    """A sink accepted an event."""

    sink: str
    event_id: str
    attempts: int
    status_code: int
    phase: ClassVar[str] = "notification"
    outcome: ClassVar[str] = "delivered"


class NotificationAttempted(Event, frozen=True, kw_only=True,
                            tag="dockyard.notification.attempted"):
    """One delivery attempt to a sink (every attempt is recorded)."""

    sink: str
    event_id: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    phase: ClassVar[str] = "notification"
    outcome: ClassVar[str] = "attempted"


AnyEvent = Union[
    DeployQueued,
    BuildStarted,
    BuildSucceeded,
    BuildFailed,
    ReleaseStarted,
    ReleaseSucceeded,
    ReleaseFailed,
    StartStarted,
    StartSucceeded,
    StartFailed,
    HookStarted,
    HookSucceeded,
    HookFailed,
    TrafficSwitched,
    TrafficFailed,
    AfterSwitchSucceeded,
    AfterSwitchFailed,
    RetireSucceeded,
    DeployAborted,
    DeploySucceeded,
    DeployFailed,
    CommandStarted,
    CommandFinished,
    NotificationFailed,
    NotificationDelivered,
    NotificationAttempted,
]
EVENT_TYPES: tuple[type[Event], ...] = AnyEvent.__args__  # type: ignore[attr-defined]
FAILURE_TYPES: tuple[type[Failure], ...] = tuple(t for t in EVENT_TYPES if issubclass(t, Failure))
COMMAND_TYPES: tuple[type[Message], ...] = (DeployRequested, CancelRequested)

# The status a deployment has once each event is seen (for the projection and the CLI).
STATUS_AFTER: dict[str, Status] = {
    "dockyard.deploy.queued": "queued",
    "dockyard.build.started": "building",
    "dockyard.build.succeeded": "releasing",
    "dockyard.release.started": "releasing",
    "dockyard.release.succeeded": "starting",
    "dockyard.start.started": "starting",
    "dockyard.start.succeeded": "postdeploy",
    "dockyard.hook.started": "postdeploy",
    "dockyard.hook.succeeded": "switching",
    "dockyard.deploy.succeeded": "succeeded",
}


def event_id(deployment_id: str, type_: str, *parts: object) -> str:
    """Deterministic event id, so a retried publish is deduplicated by JetStream."""
    suffix = "".join(f":{p}" for p in parts)
    return f"{deployment_id}:{type_.removeprefix('dockyard.')}{suffix}"


def type_of(cls: type[Message]) -> str:
    """The CloudEvents type (msgspec tag) of a struct class."""
    tag = msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
    assert isinstance(tag, str)
    return tag


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a deployment's live output on dockyard.log.<deployment_id>."""

    deployment_id: str
    app: str
    text: str
    stream: Literal["out", "err", "system"] = "out"
    source: str = ""
    time: datetime = msgspec.field(default_factory=_now)
