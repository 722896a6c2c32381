"""Rollback's decisions, as plain values: the target, the kept releases, the spec."""

from __future__ import annotations

import pytest

from dockyard.contract.events import DeploySpec
from dockyard.contract.plan import Command, Plan
from dockyard.contract.state import LiveRelease
from dockyard.hook_runner.decide import config_pinned
from dockyard.pipeline.artifacts import disposable_artifacts
from dockyard.pipeline.rollback import (
    ReleaseNotKept,
    UnknownRelease,
    hook_plan,
    hooks_line,
    kept_releases,
    pruned_artifacts,
    release_number,
    rollback_spec,
    target,
)
from dockyard.plan.errors import ManifestError
from dockyard.plan.merge import build_plan


def cmd(label: str) -> Command:
    return Command(label=label, command=label, timeout=60)


PLAN = Plan(predeploy=[cmd("pre")], release=[cmd("rel")], postdeploy=[cmd("post")],
            after_switch=[cmd("after")], on_failure=[cmd("fail")])


def spec(n: int, runtime: str = "docker", kind: str = "source") -> DeploySpec:
    """Release n's spec: docker images or process release directories, as each runtime names
    its artifacts; predeploy committed a second artifact."""
    if runtime == "docker":
        built, committed = f"dockyard/a:v{n}", f"dockyard/a:v{n}-predeploy"
    else:
        built, committed = f"/apps/a/releases/v{n}", f"/apps/a/releases/v{n}-predeploy"
    return DeploySpec(runtime=runtime, build_id=f"v{n}-x", artifact=committed,
                      build_artifact=built, plan=PLAN, config_version=n * 10,
                      kind=kind)  # type: ignore[arg-type]


def live(n: int, s: DeploySpec | None = None) -> LiveRelease:
    return LiveRelease(app="a", release=n, deployment_id=f"d{n}", spec=s or spec(n),
                       instances=[])


HISTORY = [live(n) for n in range(1, 8)]  # v1..v7 went live, v7 is live


@pytest.mark.parametrize("text,number", [("v3", 3), ("V3", 3), ("3", 3), (" 12 ", 12)])
def test_release_numbers_are_written_v3_or_3(text: str, number: int) -> None:
    assert release_number(text) == number


@pytest.mark.parametrize("text", ["", "v", "v0", "0", "-1", "three", "v3.1", "vv3"])
def test_anything_else_is_not_a_release_number(text: str) -> None:
    with pytest.raises(ValueError, match="is not a release number"):
        release_number(text)


def test_the_default_target_is_the_release_before_the_live_one() -> None:
    assert target("a", HISTORY, None, 5).release == 6
    # A release seen twice in the history (its record written again) counts once.
    assert target("a", [*HISTORY[:6], HISTORY[5], HISTORY[6]], None, 5).release == 6
    # After a rollback (v8 runs v3's build), the one before is v7, not v3.
    rolled = [*HISTORY, live(8, rollback_spec(HISTORY[2]))]
    assert target("a", rolled, None, 5).release == 7


def test_a_named_target_is_that_release() -> None:
    assert target("a", HISTORY, 3, 5) == HISTORY[2]


@pytest.mark.parametrize("history,to,message", [
    ([], None, "a has no live release: nothing to roll back"),
    ([], 3, "a has no live release: nothing to roll back"),
    ([live(1)], None, "a has no release before v1 to roll back to"),
    (HISTORY, 7, "v7 is the live release of a: nothing to roll back"),
    (HISTORY, 0, "v0 is not a release number (they start at v1)"),
    (HISTORY, 9, "a has no release v9 that went live (kept: v3, v4, v5, v6, v7)"),
    # v5 failed: it never went live.
    ([live(n) for n in (3, 4, 6, 7)], 5,
     "a has no release v5 that went live (kept: v3, v4, v6, v7)"),
])
def test_an_unknown_target_is_one_line(history: list[LiveRelease], to: int | None,
                                       message: str) -> None:
    with pytest.raises(UnknownRelease) as info:
        target("a", history, to, 5)
    assert str(info.value) == message


def test_a_release_past_the_kept_ones_is_no_longer_kept() -> None:
    with pytest.raises(ReleaseNotKept) as info:
        target("a", HISTORY, 2, 5)
    assert str(info.value) == "v2 is no longer kept (DOCKYARD_KEEP_RELEASES=5)"
    # Gone from the history too.
    with pytest.raises(ReleaseNotKept):
        target("a", HISTORY[3:], 1, 5)
    # The default target outside a window of 1.
    with pytest.raises(ReleaseNotKept, match="v6 is no longer kept"):
        target("a", HISTORY, None, 1)


def test_kept_releases_are_the_last_ones_that_went_live() -> None:
    assert [r.release for r in kept_releases(HISTORY, 3)] == [5, 6, 7]
    assert [r.release for r in kept_releases(HISTORY[:2], 3)] == [1, 2]


@pytest.mark.parametrize("runtime", ["docker", "process"])
def test_retire_removes_only_the_artifacts_of_releases_before_the_kept_ones(
        runtime: str) -> None:
    history = [live(n, spec(n, runtime)) for n in range(1, 5)]
    removed = pruned_artifacts(history, 2, [])
    assert removed == [spec(1, runtime).artifact, spec(1, runtime).build_artifact,
                       spec(2, runtime).artifact, spec(2, runtime).build_artifact]
    assert pruned_artifacts(history, 4, []) == []
    # v5 is a rollback to v1 (and v6 a config release of v5's build): v1's build stays in use.
    history += [live(5, rollback_spec(history[0])), live(6, spec(6, runtime))]
    removed = pruned_artifacts(history, 2, [])
    assert spec(1, runtime).build_artifact not in removed
    assert spec(1, runtime).artifact in removed  # predeploy committed a new one for v5
    # What a caller also keeps (the live release) stays.
    assert spec(2, runtime).artifact not in pruned_artifacts(history, 2, [spec(2, runtime)])


@pytest.mark.parametrize("runtime", ["docker", "process"])
def test_a_failed_rollback_never_removes_the_kept_release_it_ran(runtime: str) -> None:
    to = live(3, spec(3, runtime))
    failed = rollback_spec(to)
    kept = [to.spec, spec(4, runtime)]
    assert disposable_artifacts(failed, live(4, spec(4, runtime)), kept) == []
    # Its own predeploy artifact goes.
    committed = DeploySpec(runtime=runtime, build_id=failed.build_id, artifact="new",
                           build_artifact=failed.build_artifact, plan=failed.plan)
    assert disposable_artifacts(committed, live(4, spec(4, runtime)), kept) == ["new"]


def test_the_rollback_spec_runs_the_old_build_with_its_config_version() -> None:
    old = spec(3)
    made = rollback_spec(live(3, old))
    assert made.kind == "rollback" and made.rolled_back_to == 3
    assert made.config_version == 30 and made.build_id == old.build_id
    # Predeploy runs again from the image as built (the release phase runs).
    assert made.artifact == made.build_artifact == old.build_artifact
    assert made.plan.predeploy == PLAN.predeploy and made.plan.release == PLAN.release
    assert made.plan.postdeploy == [] and made.plan.after_switch == []
    assert made.plan.on_failure == PLAN.on_failure


def test_rollback_hooks_say_which_phases_run() -> None:
    every = Plan(**{**{f: getattr(PLAN, f) for f in PLAN.__struct_fields__},
                    "rollback_hooks": "all"})
    assert hook_plan(every) == every
    none = hook_plan(Plan(**{**{f: getattr(PLAN, f) for f in PLAN.__struct_fields__},
                             "rollback_hooks": "none"}))
    assert (none.predeploy, none.release, none.postdeploy, none.after_switch) == ([], [], [], [])
    assert none.on_failure == PLAN.on_failure
    # With no hook run, the artifact is the old release's own (its predeploy's changes in).
    old = DeploySpec(runtime="docker", build_id="b", artifact="committed", build_artifact="built",
                     plan=Plan(rollback_hooks="none"))
    assert rollback_spec(live(2, old)).artifact == "committed"
    assert "predeploy and release run" in hooks_line(PLAN)
    assert 'rollback_hooks = "none"' in hooks_line(none)


@pytest.mark.parametrize("toml,setting", [(None, "release"), ('rollback_hooks = "all"\n', "all"),
                                          ('rollback_hooks = "none"\n', "none")])
def test_dockyard_toml_sets_rollback_hooks(toml: str | None, setting: str) -> None:
    files = {"Procfile": "web: serve\n", **({"dockyard.toml": toml} if toml else {})}
    assert build_plan(files, []).rollback_hooks == setting


def test_a_bad_rollback_hooks_value_names_its_line() -> None:
    with pytest.raises(ManifestError, match=r"dockyard.toml:2: .*rollback_hooks"):
        build_plan({"dockyard.toml": 'drain = "1s"\nrollback_hooks = "some"\n'}, [])


def test_a_rollback_keeps_its_pinned_config_version_a_deploy_takes_the_current() -> None:
    assert config_pinned(rollback_spec(live(3)))
    assert not config_pinned(spec(3)) and not config_pinned(spec(3, kind="config"))
