"""Every event and command on the bus.

Events are structured-mode CloudEvents 1.0: the envelope attributes at the top (`specversion`,
`id`, `source`, `type`, `time`, `subject` = the app, `datacontenttype`, `dataschema`, and the
extension attributes `deploymentid` and `release`), the payload under `data`. Each event type is
a tagged `Event[Data]` struct, so the JSON a consumer reads is exactly what the struct encodes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar, Union

import msgspec

from dockyard.contract import subjects
from dockyard.contract.phase import Phase
from dockyard.contract.plan import Plan, RolloutOverride

Status = Literal[
    "queued",
    "building",
    "releasing",
    "starting",
    "postdeploy",
    "switching",
    "canary",
    "succeeded",
    "build-error",
    "release-error",
    "start-error",
    "hook-error",
    "switch-error",
    "canary-error",
    "rolled-back",
    "cancelled",
    "rejected",
    "timeout",
]
# `rejected`: refused before its turn (the app's queue was full); nothing ran.
# `timeout`: a phase passed its deadline (the builder's watchdog ended the deploy).
# `canary-error`: a canary step's figures crossed the thresholds; every request went back.
# `rolled-back`: inside the watch window after the switch the new release's figures crossed
# them; the router switched back to the still-warm old release.
FailedStatus = Literal["build-error", "release-error", "start-error", "hook-error",
                       "switch-error", "canary-error", "rolled-back", "cancelled", "rejected",
                       "timeout"]
FAILED_STATUSES: tuple[FailedStatus, ...] = ("build-error", "release-error", "start-error",
                                             "hook-error", "switch-error", "canary-error",
                                             "rolled-back", "cancelled", "rejected", "timeout")
DeployKind = Literal["source", "config", "rollback"]
TAIL_LINES = 100

SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"
# Major version of the event contract: fields are only ever added within it (schemas/README.md).
CONTRACT_VERSION = 1
SCHEMA_PREFIX = f"urn:dockyard:schema:v{CONTRACT_VERSION}:"


def _now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random identifier."""
    return uuid.uuid4().hex


def schema_uri(type_: str) -> str:
    """The `dataschema` of an event type: the `$id` of its JSON Schema in schemas/json/."""
    return f"{SCHEMA_PREFIX}{type_}"


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of everything published; `type` is the CloudEvents type and the decoding tag."""

    @property
    def type(self) -> str:
        """The CloudEvents type (the msgspec tag), e.g. `dockyard.hook.succeeded`."""
        return type_of(self.__class__)


# ---------------------------------------------------------------- commands


class DeployRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.deploy"):
    """Ask for a deploy: of an uploaded source archive, of the live build with new config, or
    (rollback) a new release of an earlier release's build and config."""

    deployment_id: str
    app: str
    kind: DeployKind = "source"
    source_object: str | None = None
    runtime: str | None = None
    requested_at: datetime = msgspec.field(default_factory=_now)
    reason: str = ""
    # A rollback's target release (None: the release before the live one).
    to_release: int | None = None
    # This deploy's own canary steps, hold or watch window over the manifest's [rollout], or
    # none at all (`off`).
    rollout: RolloutOverride | None = None

    subject: ClassVar[str] = subjects.CMD_DEPLOY


class CancelRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.cancel"):
    """Ask to cancel a queued or running deployment."""

    deployment_id: str
    app: str
    reason: str = "cancelled by user"

    subject: ClassVar[str] = subjects.CMD_CANCEL


# A one-off's longest timeout (a day) and the one it gets unless asked otherwise (an hour).
RUN_MAX_TIMEOUT = 24 * 3600.0
RUN_DEFAULT_TIMEOUT = 3600.0
# The exit code of a run's last line when the command could not run at all.
RUN_NOT_RUN = -1


class RunRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.run"):
    """Ask for a one-off: `command` run once (by `sh -c`) from the app's live release, with
    that release's config; its output and exit code go to dockyard.log.<run_id>."""

    run_id: str
    app: str
    command: str
    timeout: float = RUN_DEFAULT_TIMEOUT
    requested_at: datetime = msgspec.field(default_factory=_now)

    subject: ClassVar[str] = subjects.CMD_RUN


ScaleKind = Literal["scale", "restart"]
# The most instances of one process type a formation may ask for.
MAX_SCALE = 20


class ScaleRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.scale"):
    """Ask to change the live release's instances: `scale` to the given counts per process type
    (the app's formation, kept for later deploys), or `restart` (a rolling replacement of every
    instance, or of one process type's)."""

    deployment_id: str  # the operation's id (32 hex digits): the `deploymentid` of its events
    app: str
    kind: ScaleKind = "scale"
    counts: dict[str, int] = {}
    process: str | None = None  # restart: one process type (None: every one)
    requested_at: datetime = msgspec.field(default_factory=_now)

    subject: ClassVar[str] = subjects.CMD_SCALE


class DestroyRequested(Message, frozen=True, kw_only=True, tag="dockyard.cmd.destroy"):
    """Ask to destroy an app: its instances, route, artifacts and state go; the name is free.
    `operation_id` names the destroy (its events carry it as `deploymentid`)."""

    operation_id: str
    app: str
    requested_at: datetime = msgspec.field(default_factory=_now)
    subject: ClassVar[str] = subjects.CMD_DESTROY


# ---------------------------------------------------------------- what events carry


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
    kind: DeployKind = "source"
    build_artifact: str = ""  # the artifact as built, before predeploy's changes were committed
    rolled_back_to: int | None = None  # a rollback's: the release whose build and config it runs


class KindData(msgspec.Struct, frozen=True, kw_only=True):
    """What kind of deploy this is."""

    kind: DeployKind = "source"


class SpecData(msgspec.Struct, frozen=True, kw_only=True):
    """The deploy's spec (artifact, plan, config version)."""

    spec: DeploySpec


class InstancesData(msgspec.Struct, frozen=True, kw_only=True):
    """The spec and the new release's instances (healthy, not routed before the switch)."""

    spec: DeploySpec
    instances: list[InstanceRef]


class SwitchData(msgspec.Struct, frozen=True, kw_only=True):
    """The spec, the instances now routed, and the release that was live before."""

    spec: DeploySpec
    instances: list[InstanceRef]
    previous_release: int | None = None


class FailureData(msgspec.Struct, frozen=True, kw_only=True):
    """Why a deploy failed: status, a sentence, and the failing command's exit code and tail."""

    status: FailedStatus
    reason: str
    exit_code: int | None = None
    tail: list[str] = []
    command: str | None = None
    spec: DeploySpec | None = None


class ReleaseFigures(msgspec.Struct, frozen=True, kw_only=True):
    """What one release answered over a canary step, as the router measured it."""

    release: int
    requests: int
    errors: int  # 5xx answers and failed connections
    error_rate: float
    p95: float | None  # seconds; None with no request


RolloutVerdict = Literal["started", "passed", "failed", "inconclusive"]


class RolloutData(msgspec.Struct, frozen=True, kw_only=True):
    """A canary step: its place, the share of requests the new release takes, and (once judged)
    both releases' figures over it, the verdict and why."""

    step: int  # 1-based; steps + 1 is the promotion to every request
    steps: int
    percent: int
    verdict: RolloutVerdict = "started"
    reason: str = ""
    new: ReleaseFigures | None = None
    old: ReleaseFigures | None = None


class WatchData(msgspec.Struct, frozen=True, kw_only=True):
    """A watch window that passed: the deploy's spec, and both releases' figures (the new
    release's over the window, the old one's before the switch)."""

    spec: DeploySpec
    watch: float  # seconds
    reason: str = ""
    new: ReleaseFigures | None = None
    old: ReleaseFigures | None = None


class RetireData(msgspec.Struct, frozen=True, kw_only=True):
    """The old instances that were stopped."""

    stopped: list[str] = []


class EndData(msgspec.Struct, frozen=True, kw_only=True):
    """How the deploy ended."""

    status: Literal["succeeded"] = "succeeded"


class CommandData(msgspec.Struct, frozen=True, kw_only=True):
    """One hook command: its phase, label, place in the phase and text."""

    hook_phase: Phase
    label: str
    index: int
    total: int
    command: str


class CommandResultData(msgspec.Struct, frozen=True, kw_only=True):
    """One hook command that ended (exit code -128 after its timeout)."""

    hook_phase: Phase
    label: str
    index: int
    total: int
    command: str
    exit_code: int
    duration: float
    tail: list[str] = []


class ScaleData(msgspec.Struct, frozen=True, kw_only=True):
    """A scale or restart of the live release: its spec, the instances it runs (started ones
    healthy), the formation, and the instances stopped (once it succeeded)."""

    kind: ScaleKind = "scale"
    spec: DeploySpec
    instances: list[InstanceRef]
    formation: dict[str, int] = {}
    started: list[str] = []
    stopped: list[str] = []


class ScaleFailureData(msgspec.Struct, frozen=True, kw_only=True):
    """Why a scale or restart did not happen (the live release's instances are as before)."""

    kind: ScaleKind = "scale"
    reason: str


class NotificationAttemptData(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery attempt of an event to a sink."""

    sink: str
    event_id: str
    attempt: int
    status_code: int | None = None
    error: str | None = None


class NotificationDeliveredData(msgspec.Struct, frozen=True, kw_only=True):
    """A sink accepted an event."""

    sink: str
    event_id: str
    attempts: int
    status_code: int


class NotificationFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """A sink did not accept an event after every attempt."""

    sink: str
    event_id: str
    attempts: int
    reason: str


class DestroyData(msgspec.Struct, frozen=True, kw_only=True):
    """What one step of a destroy removed (one short line per thing), and the runtimes the
    app's kept live releases ran on (read by the builder before the router purges the records;
    the scheduler looks for what is left of the app there)."""

    removed: list[str] = []
    runtimes: list[str] = []


class DestroyFailureData(msgspec.Struct, frozen=True, kw_only=True):
    """Why a destroy was refused; nothing was removed."""

    reason: str


D = TypeVar("D", bound=msgspec.Struct)


# ---------------------------------------------------------------- the envelope


class Event(Message, Generic[D], frozen=True, kw_only=True):
    """The CloudEvents envelope every event shares; its payload is `data`."""

    specversion: str = SPECVERSION
    id: str
    source: str
    subject: str
    time: datetime = msgspec.field(default_factory=_now)
    datacontenttype: str = DATACONTENTTYPE
    dataschema: str
    deployment_id: str = msgspec.field(name="deploymentid")
    release: int = 0
    data: D

    topic: ClassVar[str] = ""
    outcome: ClassVar[str] = ""

    @property
    def app(self) -> str:
        """The app the event is about (the CloudEvents `subject`)."""
        return self.subject

    def nats_subject(self) -> str:
        """Where this event is published."""
        return subjects.event(self.subject, self.topic, self.outcome)


class DeployQueued(Event[KindData], frozen=True, kw_only=True, tag="dockyard.deploy.queued"):
    """A deploy request was accepted and waits for its turn."""

    topic: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "queued"


class BuildStarted(Event[KindData], frozen=True, kw_only=True, tag="dockyard.build.started"):
    """The deploy holds the app's lock and its build began."""

    topic: ClassVar[str] = "build"
    outcome: ClassVar[str] = "started"


class BuildSucceeded(Event[SpecData], frozen=True, kw_only=True, tag="dockyard.build.succeeded"):
    """The artifact exists and the plan was built."""

    topic: ClassVar[str] = "build"
    outcome: ClassVar[str] = "succeeded"


class BuildFailed(Event[FailureData], frozen=True, kw_only=True, tag="dockyard.build.failed"):
    """The build or the manifest failed."""

    topic: ClassVar[str] = "build"
    outcome: ClassVar[str] = "failed"


class ReleaseStarted(Event[SpecData], frozen=True, kw_only=True,
                     tag="dockyard.release.started"):
    """Predeploy and release commands began."""

    topic: ClassVar[str] = "release"
    outcome: ClassVar[str] = "started"


class ReleaseSucceeded(Event[SpecData], frozen=True, kw_only=True,
                       tag="dockyard.release.succeeded"):
    """Every predeploy and release command succeeded (artifact includes predeploy's changes)."""

    topic: ClassVar[str] = "release"
    outcome: ClassVar[str] = "succeeded"


class ReleaseFailed(Event[FailureData], frozen=True, kw_only=True,
                    tag="dockyard.release.failed"):
    """A predeploy or release command failed; no instance was started."""

    topic: ClassVar[str] = "release"
    outcome: ClassVar[str] = "failed"


class StartStarted(Event[SpecData], frozen=True, kw_only=True, tag="dockyard.start.started"):
    """The scheduler began starting the new release's instances."""

    topic: ClassVar[str] = "start"
    outcome: ClassVar[str] = "started"


class StartSucceeded(Event[InstancesData], frozen=True, kw_only=True,
                     tag="dockyard.start.succeeded"):
    """Every new instance is healthy and not yet routed."""

    topic: ClassVar[str] = "start"
    outcome: ClassVar[str] = "succeeded"


class StartFailed(Event[FailureData], frozen=True, kw_only=True, tag="dockyard.start.failed"):
    """An instance did not become healthy; the new instances were removed."""

    topic: ClassVar[str] = "start"
    outcome: ClassVar[str] = "failed"


class HookStarted(Event[InstancesData], frozen=True, kw_only=True, tag="dockyard.hook.started"):
    """Postdeploy commands began (new instances healthy, not routed)."""

    topic: ClassVar[str] = "hook"
    outcome: ClassVar[str] = "started"


class HookSucceeded(Event[InstancesData], frozen=True, kw_only=True,
                    tag="dockyard.hook.succeeded"):
    """Every postdeploy command succeeded: the gate is open, the router may switch."""

    topic: ClassVar[str] = "hook"
    outcome: ClassVar[str] = "succeeded"


class HookFailed(Event[FailureData], frozen=True, kw_only=True, tag="dockyard.hook.failed"):
    """A postdeploy command failed; traffic stays on the old release."""

    topic: ClassVar[str] = "hook"
    outcome: ClassVar[str] = "failed"


class TrafficSwitched(Event[SwitchData], frozen=True, kw_only=True,
                      tag="dockyard.traffic.switched"):
    """The proxy confirmed it now routes the app's host to the new instances."""

    topic: ClassVar[str] = "traffic"
    outcome: ClassVar[str] = "switched"


class TrafficFailed(Event[FailureData], frozen=True, kw_only=True,
                    tag="dockyard.traffic.failed"):
    """The proxy refused the new configuration; the old routes stay."""

    topic: ClassVar[str] = "traffic"
    outcome: ClassVar[str] = "failed"


class RolloutStep(Event[RolloutData], frozen=True, kw_only=True, tag="dockyard.rollout.step"):
    """A canary step began (the new release takes `percent` % of requests, sticky per client)
    or was judged (with both releases' figures over it)."""

    topic: ClassVar[str] = "rollout"
    outcome: ClassVar[str] = "step"


class RolloutPromoted(Event[RolloutData], frozen=True, kw_only=True,
                      tag="dockyard.rollout.promoted"):
    """Every canary step passed: the switch to every request follows."""

    topic: ClassVar[str] = "rollout"
    outcome: ClassVar[str] = "promoted"


class RolloutAborted(Event[RolloutData], frozen=True, kw_only=True,
                     tag="dockyard.rollout.aborted"):
    """A canary step failed: every request went back to the old release (traffic.failed,
    status canary-error, follows)."""

    topic: ClassVar[str] = "rollout"
    outcome: ClassVar[str] = "aborted"


class RolloutWatched(Event[WatchData], frozen=True, kw_only=True,
                     tag="dockyard.rollout.watched"):
    """The watch window after the switch passed clean: the scheduler ends the deploy and the
    old release drains."""

    topic: ClassVar[str] = "rollout"
    outcome: ClassVar[str] = "watched"


class RolloutRolledBack(Event[FailureData], frozen=True, kw_only=True,
                        tag="dockyard.rollout.rolled_back"):
    """Inside the watch window the new release crossed the thresholds: the router switched
    every request back to the still-warm old release (no build, no hook); the scheduler removes
    the new instances and the deploy ends `rolled-back` with the figures."""

    topic: ClassVar[str] = "rollout"
    outcome: ClassVar[str] = "rolled_back"


class AfterSwitchSucceeded(Event[SpecData], frozen=True, kw_only=True,
                           tag="dockyard.after_switch.succeeded"):
    """Every after-switch command succeeded."""

    topic: ClassVar[str] = Phase.AFTER_SWITCH.value
    outcome: ClassVar[str] = "succeeded"


class AfterSwitchFailed(Event[FailureData], frozen=True, kw_only=True,
                        tag="dockyard.after_switch.failed"):
    """An after-switch command failed; traffic stays on the new release."""

    topic: ClassVar[str] = Phase.AFTER_SWITCH.value
    outcome: ClassVar[str] = "failed"


class RetireSucceeded(Event[RetireData], frozen=True, kw_only=True,
                      tag="dockyard.retire.succeeded"):
    """Old instances were drained and stopped."""

    topic: ClassVar[str] = "retire"
    outcome: ClassVar[str] = "succeeded"


class DeployAborted(Event[FailureData], frozen=True, kw_only=True, tag="dockyard.deploy.aborted"):
    """New instances of a failed deploy are gone; on-failure commands come next."""

    topic: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "aborted"


class DeploySucceeded(Event[EndData], frozen=True, kw_only=True,
                      tag="dockyard.deploy.succeeded"):
    """The deploy ended: the new release serves."""

    topic: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "succeeded"


class DeployFailed(Event[FailureData], frozen=True, kw_only=True, tag="dockyard.deploy.failed"):
    """The deploy ended failed or cancelled."""

    topic: ClassVar[str] = "deploy"
    outcome: ClassVar[str] = "failed"


class ScalePlaced(Event[ScaleData], frozen=True, kw_only=True, tag="dockyard.scale.placed"):
    """The scheduler started (and health-checked) a scale's or restart's new instances of the
    live release and recorded its placement; the router routes to exactly its web ones next."""

    topic: ClassVar[str] = "scale"
    outcome: ClassVar[str] = "placed"


class TrafficScaled(Event[ScaleData], frozen=True, kw_only=True, tag="dockyard.traffic.scaled"):
    """The proxy confirmed it routes the live release's host to the recorded web instances."""

    topic: ClassVar[str] = "traffic"
    outcome: ClassVar[str] = "scaled"


class ScaleSucceeded(Event[ScaleData], frozen=True, kw_only=True,
                     tag="dockyard.scale.succeeded"):
    """The instances no longer wanted were drained and stopped: the scale or restart ended."""

    topic: ClassVar[str] = "scale"
    outcome: ClassVar[str] = "succeeded"


class ScaleFailed(Event[ScaleFailureData], frozen=True, kw_only=True,
                  tag="dockyard.scale.failed"):
    """A scale or restart could not be done; what it had started was stopped."""

    topic: ClassVar[str] = "scale"
    outcome: ClassVar[str] = "failed"


class CommandStarted(Event[CommandData], frozen=True, kw_only=True,
                     tag="dockyard.command.started"):
    """One hook command began."""

    topic: ClassVar[str] = "command"
    outcome: ClassVar[str] = "started"


class CommandFinished(Event[CommandResultData], frozen=True, kw_only=True,
                      tag="dockyard.command.finished"):
    """One hook command ended (exit code -128 after its timeout)."""

    topic: ClassVar[str] = "command"
    outcome: ClassVar[str] = "finished"


class NotificationAttempted(Event[NotificationAttemptData], frozen=True, kw_only=True,
                            tag="dockyard.notification.attempted"):
    """One delivery attempt to a sink (every attempt is recorded)."""

    topic: ClassVar[str] = "notification"
    outcome: ClassVar[str] = "attempted"


class NotificationDelivered(Event[NotificationDeliveredData], frozen=True, kw_only=True,
                            tag="dockyard.notification.delivered"):
    """A sink accepted an event."""

    topic: ClassVar[str] = "notification"
    outcome: ClassVar[str] = "delivered"


class NotificationFailed(Event[NotificationFailedData], frozen=True, kw_only=True,
                         tag="dockyard.notification.failed"):
    """A sink did not accept an event after every attempt."""

    topic: ClassVar[str] = "notification"
    outcome: ClassVar[str] = "failed"


class DestroyStarted(Event[DestroyData], frozen=True, kw_only=True,
                     tag="dockyard.destroy.started"):
    """The destroy holds the app's lock (no deploy runs or starts); the router goes next."""

    topic: ClassVar[str] = "destroy"
    outcome: ClassVar[str] = "started"


class DestroyUnrouted(Event[DestroyData], frozen=True, kw_only=True,
                      tag="dockyard.destroy.unrouted"):
    """The proxy confirmed the app's host answers 404 and its route records are gone; the
    scheduler goes next."""

    topic: ClassVar[str] = "destroy"
    outcome: ClassVar[str] = "unrouted"


class DestroyStopped(Event[DestroyData], frozen=True, kw_only=True,
                     tag="dockyard.destroy.stopped"):
    """The app's instances are stopped and its artifacts, files and placements removed."""

    topic: ClassVar[str] = "destroy"
    outcome: ClassVar[str] = "stopped"


class DestroySucceeded(Event[DestroyData], frozen=True, kw_only=True,
                       tag="dockyard.destroy.succeeded"):
    """The app is gone: its queue, release numbers, manifests, sources, config, operator hooks
    and sinks too; the name may be deployed again as a new app (from v1)."""

    topic: ClassVar[str] = "destroy"
    outcome: ClassVar[str] = "succeeded"


class DestroyFailed(Event[DestroyFailureData], frozen=True, kw_only=True,
                    tag="dockyard.destroy.failed"):
    """The destroy was refused (a deploy of the app is queued or running); nothing changed."""

    topic: ClassVar[str] = "destroy"
    outcome: ClassVar[str] = "failed"


AnyEvent = Union[  # noqa: UP007 (a runtime value: the decoder's tagged union)
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
    RolloutStep,
    RolloutPromoted,
    RolloutAborted,
    RolloutWatched,
    RolloutRolledBack,
    AfterSwitchSucceeded,
    AfterSwitchFailed,
    RetireSucceeded,
    DeployAborted,
    DeploySucceeded,
    DeployFailed,
    CommandStarted,
    CommandFinished,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
    ScalePlaced,
    TrafficScaled,
    ScaleSucceeded,
    ScaleFailed,
    DestroyStarted,
    DestroyUnrouted,
    DestroyStopped,
    DestroySucceeded,
    DestroyFailed,
]
EVENT_TYPES: tuple[type[Event[Any]], ...] = AnyEvent.__args__  # type: ignore[attr-defined]
COMMAND_TYPES: tuple[type[Message], ...] = (DeployRequested, CancelRequested, RunRequested,
                                               ScaleRequested, DestroyRequested)
# Every event whose data is a FailureData: a deploy that did not get through a phase.
FailureEvent = Union[  # noqa: UP007
    BuildFailed, ReleaseFailed, StartFailed, HookFailed, TrafficFailed, AfterSwitchFailed,
    RolloutRolledBack, DeployAborted, DeployFailed,
]
FAILURE_TYPES: tuple[type[Event[FailureData]], ...] = FailureEvent.__args__  # type: ignore[attr-defined]
Terminal = Union[DeploySucceeded, DeployFailed]  # noqa: UP007

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
    "dockyard.rollout.step": "canary",  # until the end: the switch follows the promotion
    "dockyard.deploy.succeeded": "succeeded",
}


def event_id(deployment_id: str, type_: str, *parts: object) -> str:
    """Deterministic event id, so a retried publish is deduplicated by JetStream."""
    suffix = "".join(f":{p}" for p in parts)
    return f"{deployment_id}:{type_.removeprefix('dockyard.')}{suffix}"


def type_of(cls: type[Message]) -> str:
    """The CloudEvents type (msgspec tag) of a struct class."""
    # The class's own config, not msgspec.inspect.type_info: that walks every field's type
    # (about a millisecond an event, on the path of every handler that names its event).
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


E = TypeVar("E", bound=Event[Any])


class Fact(msgspec.Struct, Generic[D], frozen=True, kw_only=True):
    """An event decided but not yet stamped: its type and payload, checked to belong together.

    Decisions return facts; an emitter adds the envelope (id, source, subject, time, ...).
    """

    cls: type[Event[D]]
    data: D
    id_parts: tuple[str | int, ...] = ()

    @classmethod
    def of(cls, event: type[Event[D]], data: D, *id_parts: str | int) -> Fact[D]:
        """The fact that `event` happened with `data` (mypy checks that the two match)."""
        return cls(cls=event, data=data, id_parts=id_parts)


def stamp(fact: Fact[D], *, source: str, app: str, deployment_id: str, release: int,
          time: datetime | None = None) -> Event[D]:
    """The event of a fact, with its whole envelope."""
    type_ = type_of(fact.cls)
    return fact.cls(id=event_id(deployment_id, type_, *fact.id_parts), source=source,
                    subject=app, time=time or _now(), dataschema=schema_uri(type_),
                    deployment_id=deployment_id, release=release, data=fact.data)


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a deployment's live output on dockyard.log.<deployment_id>."""

    deployment_id: str
    app: str
    text: str
    stream: Literal["out", "err", "system"] = "out"
    source: str = ""
    time: datetime = msgspec.field(default_factory=_now)
    # Only on the last line of a one-off run (`dockyard run`): the command's exit code,
    # TIMEOUT_EXIT_CODE (-128) after its timeout, RUN_NOT_RUN (-1) when it could not run.
    exit_code: int | None = None


class AppLogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a running instance's own output, on
    dockyard.applog.<app>.<process>.<instance> (redacted, cut)."""

    app: str
    process: str
    instance: str
    release: int
    text: str
    stream: Literal["out", "err"] = "out"
    time: datetime = msgspec.field(default_factory=_now)
