"""Which artifacts may go, as plain values."""

from __future__ import annotations

from dockyard.contract.events import DeploySpec
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease
from dockyard.pipeline.artifacts import disposable_artifacts, replaced_artifacts


def spec(artifact: str, build: str = "") -> DeploySpec:
    return DeploySpec(runtime="docker", build_id="b", artifact=artifact, build_artifact=build,
                      plan=Plan())


def live(s: DeploySpec) -> LiveRelease:
    return LiveRelease(app="a", release=1, deployment_id="d", spec=s, instances=[])


def test_a_failed_deploys_own_artifacts_go_once_each() -> None:
    # Without predeploy the artifact is the build itself: named once.
    assert disposable_artifacts(spec("img", "img"), None) == ["img"]
    # A spec from before build_artifact existed.
    assert disposable_artifacts(spec("img"), None) == ["img"]


def test_what_the_live_release_runs_or_was_built_from_stays() -> None:
    running = live(spec("img-live-pre", "img-live"))
    assert disposable_artifacts(spec("img-live"), running) == []
    assert disposable_artifacts(spec("img-live-pre"), running) == []
    assert disposable_artifacts(spec("x", "img-live"), running) == ["x"]


def test_replaced_artifacts_are_listed_once_in_order() -> None:
    v1 = spec("v1-pre", "v1")
    again = spec("v1-pre", "v1")  # the same release seen twice in the history
    assert replaced_artifacts([v1, again], [spec("v2")]) == ["v1-pre", "v1"]
    assert replaced_artifacts([spec("", "")], [spec("v2")]) == []
    assert replaced_artifacts([v1], [v1]) == []
