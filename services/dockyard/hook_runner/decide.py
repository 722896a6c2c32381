"""The hook-runner's decisions, as plain values: what a phase's results say happened."""

from __future__ import annotations

import msgspec

from dockyard.contract.events import (
    RUN_MAX_TIMEOUT,
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    DeployFailed,
    DeploySpec,
    Event,
    Fact,
    FailedStatus,
    FailureData,
    HookFailed,
    HookSucceeded,
    InstancesData,
    ReleaseFailed,
    ReleaseSucceeded,
    RunRequested,
    SpecData,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import Command
from dockyard.contract.state import LiveRelease
from dockyard.pipeline.phases import PhaseResult
from dockyard.runtime.base import TIMEOUT_EXIT_CODE

FailureEvent = type[Event[FailureData]]


def pinned(spec: DeploySpec, config_version: int) -> DeploySpec:
    """The spec with the config version its release is made with."""
    return msgspec.structs.replace(spec, config_version=config_version)


def config_pinned(spec: DeploySpec) -> bool:
    """Whether the spec names its config version already (a rollback: the earlier release's),
    rather than taking the current one."""
    return spec.kind == "rollback"


def with_artifact(spec: DeploySpec, artifact: str) -> DeploySpec:
    """The spec pointing at an artifact (predeploy's committed one)."""
    return msgspec.structs.replace(spec, artifact=artifact)


def failure(cls: FailureEvent, spec: DeploySpec | None, result: PhaseResult, phase: Phase,
            status: FailedStatus) -> Fact[FailureData]:
    """A phase's failure: its reason, exit code, tail and command (status cancelled if it was)."""
    return Fact.of(cls, FailureData(
        status="cancelled" if result.cancelled else status, reason=result.reason(phase),
        exit_code=result.exit_code, tail=result.tail,
        command=result.failed.command if result.failed else None, spec=spec))


def cancelled(cls: FailureEvent, reason: str, spec: DeploySpec | None) -> Fact[FailureData]:
    """A phase that did not start because the deployment was cancelled."""
    return Fact.of(cls, FailureData(status="cancelled", reason=reason, spec=spec))


def release_outcome(spec: DeploySpec, predeploy: PhaseResult,
                    release: PhaseResult | None) -> Fact[SpecData] | Fact[FailureData]:
    """Release succeeded (on predeploy's artifact) or failed at predeploy or release."""
    built = with_artifact(spec, predeploy.artifact)
    if not predeploy.ok:
        # The spec names predeploy's committed artifact, so cleanup can remove it too.
        return failure(ReleaseFailed, built, predeploy, Phase.PREDEPLOY, "release-error")
    assert release is not None, "release runs after a predeploy that passed"
    if not release.ok:
        return failure(ReleaseFailed, built, release, Phase.RELEASE, "release-error")
    return Fact.of(ReleaseSucceeded, SpecData(spec=built))


def postdeploy_outcome(placed: InstancesData,
                       result: PhaseResult) -> Fact[InstancesData] | Fact[FailureData]:
    """The gate: open (hook.succeeded) or shut (hook.failed)."""
    if not result.ok:
        return failure(HookFailed, placed.spec, result, Phase.POSTDEPLOY, "hook-error")
    return Fact.of(HookSucceeded, placed)


def first_deploy_split(commands: list[Command],
                       live_release: int | None) -> tuple[list[Command], list[Command]]:
    """(to run, skipped): first-deploy-only commands are skipped once the app has a live release."""
    if live_release is None:
        return list(commands), []
    return ([c for c in commands if not c.first_deploy_only],
            [c for c in commands if c.first_deploy_only])


def skipped_line(command: Command, live_release: int) -> str:
    """The deploy-log line saying why a first-deploy-only command did not run."""
    return (f"skipped '{command.label}' [{command.source}]: it runs on the app's first deploy"
            f" only, and v{live_release} is live (appjson_postdeploy = \"every\" in dockyard.toml"
            " runs it on every deploy)")


def after_switch_outcome(spec: DeploySpec,
                         result: PhaseResult) -> Fact[SpecData] | Fact[FailureData]:
    """After-switch passed, or failed (traffic stays on the new release either way)."""
    if not result.ok:
        return failure(AfterSwitchFailed, spec, result, Phase.AFTER_SWITCH, "hook-error")
    return Fact.of(AfterSwitchSucceeded, SpecData(spec=spec))


def failure_env(aborted: FailureData) -> dict[str, str]:
    """What on-failure commands are told about the failure."""
    return {"DOCKYARD_FAILURE_STATUS": aborted.status, "DOCKYARD_FAILURE_REASON": aborted.reason}


def deploy_failed(aborted: FailureData) -> Fact[FailureData]:
    """The end of a failed deploy, with the failure that ended it (the spec left out)."""
    return Fact.of(DeployFailed, msgspec.structs.replace(aborted, spec=None))


# ---------------------------------------------------------------- one-off runs (`dockyard run`)


def run_refusal(cmd: RunRequested, live: LiveRelease | None) -> str | None:
    """Why a one-off cannot run (None: it can): a blank command, a timeout out of range, or
    an app with no live release to run it from."""
    if not cmd.command.strip():
        return "no command to run"
    if not 0 < cmd.timeout <= RUN_MAX_TIMEOUT:
        return f"timeout must be more than 0 and at most {RUN_MAX_TIMEOUT:g} seconds"
    if live is None:
        return f"app {cmd.app!r} has no live release to run from: deploy it first"
    return None


def run_end(exit_code: int, duration: float, timeout: float, *, timed_out: bool = False,
            cancelled: bool = False) -> tuple[str, int]:
    """A run's last log line and the exit code it carries."""
    if timed_out:
        return (f"timed out after {timeout:g}s: stopped (SIGTERM, then SIGKILL)",
                TIMEOUT_EXIT_CODE)
    if cancelled:
        return f"cancelled after {duration:.1f}s: stopped", exit_code
    return f"exit code {exit_code} in {duration:.1f}s", exit_code
