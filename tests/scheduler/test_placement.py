"""Placement decisions, as plain values."""

from __future__ import annotations

from dockyard.contract.events import DeploySpec, InstanceRef
from dockyard.contract.plan import Plan, ProcessType
from dockyard.contract.state import LiveRelease
from dockyard.pipeline.artifacts import disposable_artifacts, replaced_artifacts
from dockyard.scheduler.placement import drain_time, of_release, older, wanted


def spec(artifact: str, build: str) -> DeploySpec:
    return DeploySpec(runtime="docker", build_id="b", artifact=artifact, plan=Plan(),
                      build_artifact=build)


def test_web_first_and_every_instance_of_every_type() -> None:
    plan = Plan(processes=[ProcessType(name="worker", command="w", scale=2),
                           ProcessType(name="web", command="s", scale=1)])
    env: dict[str, dict[str, str]] = {k: {} for k in ("web-1", "worker-1", "worker-2")}
    specs = wanted(plan, app="a", deployment_id="d", release=2, artifact="x", env_for=env)
    assert [(s.process, s.index) for s in specs] == [("web", 1), ("worker", 1), ("worker", 2)]


def test_old_instances_are_the_releases_before_this_one() -> None:
    refs = [InstanceRef(id="1", process="web", release=1),
            InstanceRef(id="2", process="web", release=2),
            InstanceRef(id="3", process="web", release=3)]
    # A later release may be starting meanwhile (the drain is off the lock): it is not old.
    assert [r.id for r in older(refs, 2)] == ["1"]
    assert [r.id for r in of_release(refs, 2)] == ["2"]


def test_drain_override_wins() -> None:
    assert drain_time(30.0, None) == 30.0
    assert drain_time(30.0, 0.5) == 0.5


def test_a_failed_deploy_never_deletes_what_the_live_release_uses() -> None:
    live = LiveRelease(app="a", release=1, deployment_id="d1", spec=spec("img-live", "img-build"),
                       instances=[])
    # A config release shares the live build: only its own predeploy image goes.
    assert disposable_artifacts(spec("img-new", "img-build"), live) == ["img-new"]
    assert disposable_artifacts(spec("img-x", "img-y"), None) == ["img-x", "img-y"]
    assert disposable_artifacts(spec("img-live", "img-build"), live) == []


def test_replaced_releases_artifacts_go_unless_the_live_release_shares_them() -> None:
    v1 = spec("img-v1-pre", "img-v1")
    v2 = spec("img-v2-pre", "img-v2")
    v3_config = spec("img-v3-pre", "img-v2")  # a config release of v2's build
    assert replaced_artifacts([v1], [v2]) == ["img-v1-pre", "img-v1"]
    assert replaced_artifacts([v1, v2], [v3_config]) == ["img-v1-pre", "img-v1", "img-v2-pre"]
    assert replaced_artifacts([], [v2]) == []
    # A later deploy already live on v1's build (a rollback) keeps v1's artifacts too.
    assert replaced_artifacts([v1, v2], [v3_config, v1]) == ["img-v2-pre"]
