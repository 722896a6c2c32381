"""The builder's decisions, as plain values: requests, build ids and errors, plan size, source
name, reasons, refusal."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.archive import SourceError
from dockyard.builder import decide
from dockyard.builder.decide import (
    BUILD_ERRORS,
    MAX_PLAN_BYTES,
    PlanTooLarge,
    WrongSource,
    build_failed,
    check_plan,
    check_source,
    rejected,
)
from dockyard.contract.events import (
    BuildFailed,
    CancelRequested,
    DeployFailed,
    DeployRequested,
    DeploySpec,
    Fact,
    FailureData,
)
from dockyard.contract.names import InvalidAppName, InvalidDeploymentId
from dockyard.contract.plan import Command, Plan
from dockyard.plan.errors import ManifestError
from dockyard.runtime.base import BuildError
from dockyard.runtime.select import UnknownRuntimeError

DEP = "0123456789abcdef0123456789abcdef"


def test_a_request_in_its_one_accepted_form_is_itself() -> None:
    cmd = DeployRequested(deployment_id=DEP, app="shop-2")
    assert decide.check_request(cmd) is cmd
    cancel = CancelRequested(deployment_id=DEP, app="shop-2")
    assert decide.check_cancel(cancel) is cancel


@pytest.mark.parametrize(("app", "dep", "error"), [
    ("Shop", DEP, InvalidAppName),
    ("shop/../x", DEP, InvalidAppName),
    ("x" * 64, DEP, InvalidAppName),
    ("shop", DEP.upper(), InvalidDeploymentId),
    ("shop", "short", InvalidDeploymentId),
    ("shop", DEP + "0", InvalidDeploymentId),
])
def test_a_request_in_any_other_form_is_refused(app: str, dep: str,
                                                error: type[Exception]) -> None:
    with pytest.raises(error):
        decide.check_request(DeployRequested(deployment_id=dep, app=app))
    with pytest.raises(error):
        decide.check_cancel(CancelRequested(deployment_id=dep, app=app))


def test_a_build_id_names_the_release_and_the_deployment() -> None:
    assert decide.build_id(7, DEP) == "v7-01234567"


class ExitedBuild(BuildError):
    def __init__(self) -> None:
        super().__init__("docker build exited with code 2")
        self.exit_code = 2


def test_a_build_error_becomes_build_failed_with_its_exit_code_and_tail() -> None:
    assert decide.build_failed(ExitedBuild(), ["step 3/4", "boom"]) == Fact.of(
        BuildFailed, FailureData(status="build-error", reason="docker build exited with code 2",
                                 exit_code=2, tail=["step 3/4", "boom"]))
    plain = decide.build_failed(ManifestError("Procfile", 3, "no colon"), [])
    assert plain.data == FailureData(status="build-error", reason="Procfile:3: no colon")


def test_build_errors_are_the_apps_faults_only() -> None:
    for error in (ManifestError("Procfile", 1, "x"), BuildError("x"), SourceError("x"),
                  decide.NoReleaseError("x")):
        assert isinstance(error, decide.BUILD_ERRORS)
    # A fault of ours (the bus, the engine) is retried, not reported as the app's build error.
    assert not isinstance(OSError("x"), decide.BUILD_ERRORS)


def test_a_deploy_cancelled_in_the_queue_ends_cancelled() -> None:
    assert decide.cancelled_in_queue("no longer wanted") == Fact.of(
        DeployFailed, FailureData(status="cancelled", reason="no longer wanted"))


def test_a_config_release_reruns_predeploy_from_the_image_as_built() -> None:
    plan = Plan(release=[Command(label="m", command="./m", timeout=5)])
    live = DeploySpec(runtime="docker", build_id="v3-abc", artifact="img:v3-pre",
                      build_artifact="img:v3", plan=Plan(), config_version=4, kind="source")
    assert decide.config_spec(live, plan) == DeploySpec(
        runtime="docker", build_id="v3-abc", artifact="img:v3", build_artifact="img:v3",
        plan=plan, config_version=0, kind="config")
    # A live spec from before build_artifact existed uses its artifact.
    old = DeploySpec(runtime="docker", build_id="v1-abc", artifact="img:v1", plan=Plan())
    assert decide.config_spec(old, plan).artifact == "img:v1"
    # A config release of a rollback is a config release: current config, no rollback target.
    rolled = msgspec.structs.replace(live, kind="rollback", rolled_back_to=2)
    again = decide.config_spec(rolled, plan)
    assert (again.kind, again.rolled_back_to, again.config_version) == ("config", None, 0)


def command(text: str) -> Command:
    return Command(label="x", command=text, source="Procfile:2", timeout=60)


def test_a_plan_too_big_for_events_is_a_build_error_naming_its_size() -> None:
    small = Plan(postdeploy=[command("echo ok")])
    assert check_plan(small) is small
    # Control characters are escaped in JSON: 6 bytes each.
    big = Plan(postdeploy=[command("\x01" * 30_000)])
    with pytest.raises(PlanTooLarge) as info:
        check_plan(big)
    assert info.value.size > 180_000 and info.value.limit == MAX_PLAN_BYTES
    assert str(info.value).startswith(f"the plan is {info.value.size:,} bytes as JSON "
                                      "(at most 131,072)")
    assert isinstance(info.value, BUILD_ERRORS)


def test_a_request_builds_only_its_own_source_archive() -> None:
    assert check_source("shop/d1.tar.gz", "shop/d1.tar.gz") == "shop/d1.tar.gz"
    with pytest.raises(WrongSource, match="names source archive 'bank/d9.tar.gz'; this "
                                          "deployment's is 'shop/d1.tar.gz'"):
        check_source("bank/d9.tar.gz", "shop/d1.tar.gz")
    with pytest.raises(WrongSource, match="names no source archive"):
        check_source(None, "shop/d1.tar.gz")


def test_build_errors_include_sources_and_unknown_runtimes() -> None:
    assert isinstance(SourceError("x"), BUILD_ERRORS)
    assert isinstance(UnknownRuntimeError("x"), BUILD_ERRORS)


def test_a_build_failures_reason_is_cut_to_what_an_event_carries() -> None:
    fact = build_failed(SourceError("bad " + "x" * 100_000), ["last line"])
    assert fact.cls is BuildFailed and fact.data.status == "build-error"
    assert len(fact.data.reason.encode()) <= 4096 and fact.data.reason.endswith("bytes cut]")
    assert fact.data.tail == ["last line"]


def test_a_refused_request_ends_rejected() -> None:
    fact = rejected("shop", 20, 20)
    assert fact.cls is DeployFailed and fact.data.status == "rejected"
    assert fact.data.reason == ("the deploy queue of shop is full: 20 deployments wait "
                                "(DOCKYARD_QUEUE_LIMIT = 20); try again later")
