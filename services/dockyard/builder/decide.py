"""The builder's decisions, as plain values: what a request may be, and what a build's end says."""

from __future__ import annotations

import msgspec

from dockyard.archive import SourceError
from dockyard.bus.logs import REASON_BYTES, cut
from dockyard.contract.events import (
    BuildFailed,
    CancelRequested,
    DeployFailed,
    DeployRequested,
    DeploySpec,
    DestroyFailed,
    DestroyFailureData,
    DestroyRequested,
    Fact,
    FailureData,
)
from dockyard.contract.names import check_app, check_deployment_id
from dockyard.contract.plan import (
    Plan,
    RolloutError,
    RolloutOverride,
    checked_override,
    overridden,
)
from dockyard.contract.state import Queue
from dockyard.pipeline.rollback import RollbackError
from dockyard.plan.errors import PlanError
from dockyard.runtime.base import BuildError
from dockyard.runtime.select import UnknownRuntimeError

# A plan travels in most events of a deploy (with a reason, a command and a tail beside it):
# this keeps every one of them far below the bus's 1 MB payload.
MAX_PLAN_BYTES = 128 * 1024


class BuilderError(Exception):
    """A deploy request the builder cannot carry out as asked."""


class NoReleaseError(BuilderError):
    """A config change for an app that has never been released."""


class PlanTooLarge(BuilderError):
    """A plan too big to travel in events."""

    def __init__(self, size: int, limit: int = MAX_PLAN_BYTES) -> None:
        super().__init__(f"the plan is {size:,} bytes as JSON (at most {limit:,}): the Procfile, "
                         "app.json, dockyard.toml and operator hooks hold too much")
        self.size = size
        self.limit = limit


class WrongSource(BuilderError):
    """A request naming another deployment's source archive."""

    def __init__(self, named: str, expected: str) -> None:
        said = f"names source archive {named!r}" if named else "names no source archive"
        super().__init__(f"the deploy request {said}; this deployment's is {expected!r}")
        self.named = named
        self.expected = expected


# What ends a build as `build-error` (anything else is a fault of ours: the message is retried).
BUILD_ERRORS = (PlanError, BuildError, SourceError, BuilderError, UnknownRuntimeError,
                RollbackError, RolloutError)


def check_request(cmd: DeployRequested) -> DeployRequested:
    """The request, if its app and deployment id are in their one accepted form."""
    check_app(cmd.app)
    check_deployment_id(cmd.deployment_id)
    return cmd


def check_cancel(cmd: CancelRequested) -> CancelRequested:
    """The cancel request, if its app and deployment id are in their one accepted form."""
    check_app(cmd.app)
    check_deployment_id(cmd.deployment_id)
    return cmd


def check_destroy(cmd: DestroyRequested) -> DestroyRequested:
    """The destroy request, if its app and operation id are in their one accepted form."""
    check_app(cmd.app)
    check_deployment_id(cmd.operation_id)
    return cmd


def destroy_refusal(app: str, operation_id: str, waiting: Queue,
                    holder: str | None) -> Fact[DestroyFailureData] | None:
    """Why a destroy cannot go now (a deploy of the app is queued or holds the lock), or None.
    Refused rather than cancelling: a deploy someone asked for is never dropped silently."""
    if holder is not None and holder != operation_id:
        return Fact.of(DestroyFailed, DestroyFailureData(
            reason=f"a deploy of {app} is running ({holder}): wait for it to end or cancel it "
                   f"(dockyard cancel {holder}), then destroy again"))
    if deploys := [e.deployment_id for e in waiting.entries if e.deployment_id != operation_id]:
        return Fact.of(DestroyFailed, DestroyFailureData(
            reason=f"{len(deploys)} deploy(s) of {app} are queued ({', '.join(deploys)}): wait "
                   "for them to end or cancel them, then destroy again"))
    return None


def build_id(release: int, deployment_id: str) -> str:
    """The id of a build: its release and the start of its deployment id."""
    return f"v{release}-{deployment_id[:8]}"


def with_rollout(plan: Plan, override: RolloutOverride | None) -> Plan:
    """The plan with the deploy request's own rollout over the manifest's (RolloutError for
    one that cannot be given), noted in the plan."""
    if override is None:
        return plan
    rollout = overridden(plan.rollout, checked_override(override))
    note = ("rollout: none, as the deploy asked (every request at once)" if rollout is None
            else f"rollout: steps {rollout.steps}, hold {rollout.hold:g}s, watch "
                 f"{rollout.watch:g}s, as the deploy asked")
    return msgspec.structs.replace(plan, rollout=rollout, notes=[*plan.notes, note])


def check_plan(plan: Plan) -> Plan:
    """The plan, if it is small enough to travel in events (PlanTooLarge if not)."""
    size = len(msgspec.json.encode(plan))
    if size > MAX_PLAN_BYTES:
        raise PlanTooLarge(size)
    return plan


def check_source(named: str | None, expected: str) -> str:
    """The request's source archive, if it is this deployment's own."""
    if not named:
        raise WrongSource("", expected)
    if named != expected:
        raise WrongSource(named, expected)
    return named


def build_failed(exc: Exception, tail: list[str]) -> Fact[FailureData]:
    """The `build.failed` of a build error (its reason cut to what an event carries)."""
    return Fact.of(BuildFailed, FailureData(status="build-error", reason=cut(str(exc),
                                                                             REASON_BYTES),
                                            exit_code=getattr(exc, "exit_code", None), tail=tail))


def rejected(app: str, waiting: int, limit: int) -> Fact[FailureData]:
    """The end of a deploy refused because its app's queue is full (nothing was queued)."""
    return Fact.of(DeployFailed, FailureData(
        status="rejected", reason=f"the deploy queue of {app} is full: {waiting} deployments "
                                  f"wait (DOCKYARD_QUEUE_LIMIT = {limit}); try again later"))


def cancelled_in_queue(reason: str) -> Fact[FailureData]:
    """The end of a deploy cancelled before its turn came."""
    return Fact.of(DeployFailed, FailureData(status="cancelled", reason=reason))


def config_spec(live: DeploySpec, plan: Plan) -> DeploySpec:
    """A config release of the live build: predeploy reruns from the image as built."""
    base = live.build_artifact or live.artifact
    return msgspec.structs.replace(live, artifact=base, build_artifact=base, plan=plan,
                                   config_version=0, kind="config", rolled_back_to=None)
