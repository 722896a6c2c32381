"""The HTTP API's request and response bodies (msgspec structs: validated, and the OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from dockyard.contract.plan import Plan


class ErrorBody(msgspec.Struct, kw_only=True):
    """What went wrong and what to do about it; `details` lists each invalid field."""

    error: str
    status: int
    details: list[dict[str, Any]] = []


class Liveness(msgspec.Struct, kw_only=True):
    """The api answers and how many events it has projected."""

    status: str
    events: int


# ---------------------------------------------------------------- records (from the store)


class DeploymentRow(msgspec.Struct, kw_only=True):
    """One deployment: where it stands, and for a failure the exit code and output tail."""

    id: str
    app: str
    release: int
    status: str
    kind: str
    reason: str
    exit_code: int | None
    tail: list[str]
    created_at: str | None
    updated_at: str | None
    finished_at: str | None


class HookRunRow(msgspec.Struct, kw_only=True):
    """One hook command of a deployment; `state` is running, succeeded or failed."""

    phase: str
    index: int
    total: int
    label: str
    command: str
    state: str
    exit_code: int | None
    duration: float | None
    tail: list[str]
    started_at: str | None
    finished_at: str | None


class RouteRow(msgspec.Struct, kw_only=True):
    """Where an app's host is routed."""

    app: str
    release: int
    deployment_id: str
    upstreams: list[str]
    switched_at: str | None


class InstanceRow(msgspec.Struct, kw_only=True):
    """One instance of a release."""

    id: str
    app: str
    release: int
    deployment_id: str
    process: str
    host: str
    port: int | None
    state: str


class ReleaseRow(msgspec.Struct, kw_only=True):
    """One numbered release; `live` marks the one serving."""

    app: str
    number: int
    deployment_id: str
    build_id: str
    artifact: str
    config_version: int
    kind: str
    created_at: str | None
    live: bool


HealthState = Literal["healthy", "down", "none"]


class AppSummary(msgspec.Struct, kw_only=True):
    """An app in the list: live release, health (`healthy`: the live release has instances
    running, `down`: it has none, `none`: nothing is live), latest deployment's status."""

    name: str
    created_at: str | None
    live_release: int | None
    live_deployment_id: str | None
    status: str | None
    health: HealthState
    running: int


class AppDetail(msgspec.Struct, kw_only=True):
    """One app: live release and health, latest deployment, route and running instances."""

    name: str
    created_at: str | None
    live_release: int | None
    live_deployment_id: str | None
    health: HealthState
    deployment: DeploymentRow | None
    route: RouteRow | None
    instances: list[InstanceRow]
    # How many instances of each process type the app runs, once it was scaled (later deploys
    # start at it); null while it runs its plan's scale.
    formation: dict[str, int] | None = None


PhaseState = Literal["pending", "running", "succeeded", "failed", "skipped"]


class TimelineStep(msgspec.Struct, kw_only=True):
    """One phase of a deployment as its events tell it."""

    phase: str
    state: PhaseState
    started_at: str | None = None
    finished_at: str | None = None
    commands: int = 0
    exit_code: int | None = None
    reason: str | None = None


class DeploymentDetail(DeploymentRow, kw_only=True):
    """One deployment with its timeline (phase by phase), hook runs and events."""

    timeline: list[TimelineStep]
    hook_runs: list[HookRunRow]
    events: list[dict[str, Any]]
    links: dict[str, str]


# ---------------------------------------------------------------- operations


class Accepted(msgspec.Struct, kw_only=True):
    """A command was published; `links` say where to follow it."""

    app: str
    deployment_id: str
    links: dict[str, str]


class ConfigView(msgspec.Struct, kw_only=True):
    """An app's config version and the names it sets (values never leave the bus)."""

    app: str
    version: int
    names: list[str]


class ConfigChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Set and unset config vars; a change makes a config release when something is live."""

    set: dict[str, str] = {}
    unset: list[str] = []


class ConfigChanged(msgspec.Struct, kw_only=True):
    """The new config version, and the config release it started (none before a first deploy)."""

    app: str
    version: int
    names: list[str]
    deployment_id: str | None
    links: dict[str, str]


class HookPlan(msgspec.Struct, kw_only=True):
    """The merged plan the next deploy of the live build would run, each command's source."""

    app: str
    live_release: int | None
    plan: Plan


class HookAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An operator hook: runs after the repository's commands of its phase."""

    phase: str
    label: str
    command: str
    # A duration like 90s or 20m, a size like 512M; the phase's default when left out.
    timeout: str | None = None
    memory: str | None = None


class OperatorHookView(msgspec.Struct, kw_only=True):
    """One operator hook as stored."""

    phase: str
    label: str
    command: str
    timeout: float | None
    memory: int | None


class OperatorHooksView(msgspec.Struct, kw_only=True):
    """Every operator hook of an app, in the order they were added."""

    app: str
    hooks: list[OperatorHookView]


class SinkView(msgspec.Struct, kw_only=True):
    """A notification sink as the API shows it: no secret and no URL path (either may be a
    credential), and how it has answered lately."""

    name: str
    kind: str
    host: str
    events: list[str]
    signed: bool
    max_attempts: int
    failures: int
    given_up: int
    last_error: str | None
    last_failure_at: str | None
    last_delivered_at: str | None


class SinkAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A webhook (Standard Webhooks, signed with `secret`) or a Slack-compatible sink."""

    name: str
    url: str
    kind: Literal["webhook", "slack"] = "webhook"
    # whsec_<base64 key>, or any string (then stored, and answered once, in whsec_ form).
    secret: str | None = None
    events: list[str] | None = None
    attempts: int | None = None


class SinkAdded(msgspec.Struct, kw_only=True):
    """The stored sink; `secret`: a plain secret's whsec_ form (the key a receiver verifies
    with), answered this once; null when none was given or it was given in that form."""

    app: str
    sink: SinkView
    secret: str | None


class SinksView(msgspec.Struct, kw_only=True):
    """An app's sinks."""

    app: str
    sinks: list[SinkView]


# The operations another part builds on the bus; their shapes are fixed here.


class ScaleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Run `count` instances of one process type of the live release."""

    process: str
    count: int


class RestartRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Restart the live release's instances (one process type, or all)."""

    process: str | None = None


class RollbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new release of an earlier release's build and config (by default the release before
    the live one); databases are not rolled back."""

    release: Annotated[int, msgspec.Meta(ge=1)] | None = None


class MaintenanceRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Answer the app's host with a maintenance page (on) or route it again (off); `message`:
    one line (at most 200 characters, no braces) shown on the page."""

    enabled: bool
    message: str | None = None


class MaintenanceView(msgspec.Struct, kw_only=True):
    """Whether the app's host answers its maintenance page (503 with Retry-After) instead of
    its live release; its instances keep running either way."""

    app: str
    enabled: bool
    # When it was last turned on or off (ISO 8601); null when it never was.
    since: str | None
    message: str | None


class RolloutRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An order to the app's rollout in progress: `promote` (every request to the new release
    now; in the watch window: end it as passed) or `abort` (every request back to the old
    release: the deploy ends canary-error, or rolled-back in the watch window)."""

    action: Literal["promote", "abort"]


class RolloutFiguresView(msgspec.Struct, kw_only=True):
    """One release's answers as the router last judged them."""

    release: int
    requests: int
    errors: int
    error_rate: float
    p95: float | None  # seconds


class RolloutView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The app's rollout in progress, as the router running it last said: a canary step (the
    new release's share of requests) or the watch window after the switch; `in_progress`
    false when there is none."""

    app: str
    in_progress: bool
    deployment_id: str | None = None
    release: int | None = None
    previous_release: int | None = None
    stage: Literal["canary", "watch"] | None = None
    step: int | None = None
    steps: int | None = None
    percent: int | None = None
    until: str | None = None  # ISO 8601: when the step or the window ends
    updated: str | None = None
    new: RolloutFiguresView | None = None
    old: RolloutFiguresView | None = None


class OperationAccepted(msgspec.Struct, kw_only=True):
    """An operation was asked for on the bus."""

    app: str
    operation: str
    deployment_id: str | None = None
    warning: str | None = None
    links: dict[str, str] = {}


class Session(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The dashboard's login: the api token, once."""

    token: str
