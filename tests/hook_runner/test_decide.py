"""The hook-runner's decisions, as plain values (which postdeploy commands run on a deploy of a
live app among them)."""

from __future__ import annotations

import pytest

from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    DeployFailed,
    DeploySpec,
    Fact,
    FailureData,
    HookFailed,
    HookSucceeded,
    InstanceRef,
    InstancesData,
    ReleaseFailed,
    ReleaseSucceeded,
    SpecData,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import Command, Plan
from dockyard.hook_runner import decide
from dockyard.pipeline.phases import PhaseResult

SPEC = DeploySpec(runtime="process", build_id="v2-abc", artifact="img", plan=Plan())
PRE = Command(label="Pre", command="./pre", timeout=60)
OK = PhaseResult(ok=True, artifact="img+pre")
SETUP = Command(label="bundle exec rake db:setup", command="bundle exec rake db:setup",
                timeout=60, source="app.json:scripts.postdeploy", first_deploy_only=True)
WARM = Command(label="Warm", command="echo warm", timeout=60, source="operator")


def failed(command: Command = PRE, code: int = 3, **flags: bool) -> PhaseResult:
    return PhaseResult(ok=False, artifact="img", failed=command, exit_code=code, tail=["t"],
                       **flags)


def test_a_release_is_pinned_to_a_config_version_and_an_artifact() -> None:
    assert decide.pinned(SPEC, 4).config_version == 4
    assert decide.with_artifact(SPEC, "x").artifact == "x"
    assert decide.pinned(SPEC, 4).artifact == "img"


def test_release_succeeded_names_predeploys_artifact() -> None:
    assert decide.release_outcome(SPEC, OK, PhaseResult(ok=True, artifact="img+pre")) == Fact.of(
        ReleaseSucceeded, SpecData(spec=decide.with_artifact(SPEC, "img+pre")))


def test_a_failed_predeploy_fails_the_release_and_release_is_not_asked() -> None:
    assert decide.release_outcome(SPEC, failed(), None) == Fact.of(ReleaseFailed, FailureData(
        status="release-error", reason="predeploy command 'Pre' exited with code 3",
        exit_code=3, tail=["t"], command="./pre", spec=decide.with_artifact(SPEC, "img")))


def test_a_failed_release_fails_it_with_predeploys_artifact() -> None:
    migrate = Command(label="Migrate", command="./migrate", timeout=60)
    fact = decide.release_outcome(SPEC, OK, failed(migrate, 1))
    assert fact.cls is ReleaseFailed
    assert isinstance(fact.data, FailureData)
    assert fact.data.reason == "release command 'Migrate' exited with code 1"
    assert fact.data.spec == decide.with_artifact(SPEC, "img+pre")


def test_release_must_have_run_after_a_predeploy_that_passed() -> None:
    with pytest.raises(AssertionError):
        decide.release_outcome(SPEC, OK, None)


def test_a_cancelled_or_timed_out_command_says_so() -> None:
    cancelled = decide.failure(HookFailed, SPEC, failed(cancelled=True), Phase.POSTDEPLOY,
                               "hook-error")
    assert (cancelled.data.status, cancelled.data.reason) == (
        "cancelled", "cancelled during postdeploy command 'Pre'")
    timed = decide.failure(HookFailed, SPEC, failed(code=-128, timed_out=True),
                           Phase.POSTDEPLOY, "hook-error")
    assert (timed.data.status, timed.data.reason) == (
        "hook-error", "postdeploy command 'Pre' timed out after 60s (exit code -128)")


def test_a_phase_that_did_not_start_because_of_a_cancel() -> None:
    assert decide.cancelled(ReleaseFailed, "stop", SPEC) == Fact.of(
        ReleaseFailed, FailureData(status="cancelled", reason="stop", spec=SPEC))


def test_the_gate() -> None:
    placed = InstancesData(spec=SPEC, instances=[InstanceRef(id="w", process="web", release=2)])
    assert decide.postdeploy_outcome(placed, OK) == Fact.of(HookSucceeded, placed)
    shut = decide.postdeploy_outcome(placed, failed())
    assert shut.cls is HookFailed
    assert shut.data == FailureData(status="hook-error",
                                    reason="postdeploy command 'Pre' exited with code 3",
                                    exit_code=3, tail=["t"], command="./pre", spec=SPEC)


def test_after_switch() -> None:
    assert decide.after_switch_outcome(SPEC, OK) == Fact.of(AfterSwitchSucceeded,
                                                            SpecData(spec=SPEC))
    fact = decide.after_switch_outcome(SPEC, failed())
    assert fact.cls is AfterSwitchFailed
    assert isinstance(fact.data, FailureData)
    assert (fact.data.status, fact.data.reason) == (
        "hook-error", "after_switch command 'Pre' exited with code 3")


def test_on_failure_is_told_why_and_the_end_drops_the_spec() -> None:
    aborted = FailureData(status="start-error", reason="web.1 exited", exit_code=1,
                          tail=["x"], command=None, spec=SPEC)
    assert decide.failure_env(aborted) == {"DOCKYARD_FAILURE_STATUS": "start-error",
                                           "DOCKYARD_FAILURE_REASON": "web.1 exited"}
    assert decide.deploy_failed(aborted) == Fact.of(DeployFailed, FailureData(
        status="start-error", reason="web.1 exited", exit_code=1, tail=["x"]))


def test_first_deploy_runs_everything() -> None:
    assert decide.first_deploy_split([SETUP, WARM], None) == ([SETUP, WARM], [])


def test_a_live_app_skips_first_deploy_only_commands() -> None:
    assert decide.first_deploy_split([SETUP, WARM], 3) == ([WARM], [SETUP])
    assert decide.first_deploy_split([WARM], 3) == ([WARM], [])
    assert decide.first_deploy_split([], 3) == ([], [])


def test_skipped_line_says_why_and_how_to_change_it() -> None:
    assert decide.skipped_line(SETUP, 3) == (
        "skipped 'bundle exec rake db:setup' [app.json:scripts.postdeploy]: it runs on the app's"
        ' first deploy only, and v3 is live (appjson_postdeploy = "every" in dockyard.toml runs'
        " it on every deploy)")
