"""Rollback, as plain values: which earlier release a rollback runs again, which releases keep
their artifacts, and what the rollback release's spec is."""

from __future__ import annotations

import msgspec

from dockyard.contract.events import DeploySpec
from dockyard.contract.plan import Plan
from dockyard.contract.state import LiveRelease

KEEP_SETTING = "DOCKYARD_KEEP_RELEASES"
DATABASE_WARNING = ("warning: a rollback does not roll back databases or other external state: "
                    "the old code meets the data as it is now")
_HOOKS = {
    "release": "predeploy and release run; postdeploy and after-switch do not",
    "all": "every hook phase runs, as on a deploy",
    "none": "no hook runs (but on-failure, if the rollback fails)",
}


class RollbackError(Exception):
    """A rollback that cannot be made as asked (one line, for the CLI and the API)."""


class UnknownRelease(RollbackError):
    """No release of that number went live (never made, failed, or not yet made)."""


class ReleaseNotKept(RollbackError):
    """The release went live once, but its artifacts were removed since."""


def release_number(text: str) -> int:
    """`v3`, `V3` or `3` as 3 (ValueError with a one-line reason if it is none of those)."""
    raw = text.strip().removeprefix("v").removeprefix("V")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{text!r} is not a release number (v1, v2, ... or 1, 2, ...)")
    return int(raw)


def live_releases(history: list[LiveRelease]) -> list[LiveRelease]:
    """Each release that went live, once (its last record), by release number, oldest first."""
    by_release = {record.release: record for record in history}
    return [by_release[n] for n in sorted(by_release)]


def kept_releases(history: list[LiveRelease], keep: int) -> list[LiveRelease]:
    """The releases whose artifacts are kept: the last `keep` that went live."""
    releases = live_releases(history)
    return releases[-keep:] if keep > 0 else []


def pruned_artifacts(history: list[LiveRelease], keep: int,
                     also_keep: list[DeploySpec]) -> list[str]:
    """Artifacts of releases older than the kept ones, unless a kept release (or one of
    `also_keep`) uses them: a config release or a rollback shares an older build."""
    releases = live_releases(history)
    kept = releases[-keep:] if keep > 0 else []
    old = releases[:len(releases) - len(kept)]
    keep_set = {a for spec in [*(r.spec for r in kept), *also_keep]
                for a in (spec.artifact, spec.build_artifact)}
    made = [a for r in old for a in (r.spec.artifact, r.spec.build_artifact)]
    return [a for a in dict.fromkeys(made) if a and a not in keep_set]


def kept_specs(history: list[LiveRelease], keep: int) -> list[DeploySpec]:
    """The specs of the kept releases (their artifacts must stay)."""
    return [r.spec for r in kept_releases(history, keep)]


def target(app: str, history: list[LiveRelease], to: int | None, keep: int) -> LiveRelease:
    """The release a rollback runs again: `to`, or the one before the live one when None
    (RollbackError, one line, when there is none or its artifacts are gone)."""
    releases = live_releases(history)
    if not history:
        raise UnknownRelease(f"{app} has no live release: nothing to roll back")
    live = history[-1]
    if to is None:
        earlier = [r for r in releases if r.release < live.release]
        if not earlier:
            raise UnknownRelease(f"{app} has no release before v{live.release} to roll back to")
        chosen = earlier[-1]
    else:
        if to < 1:
            raise UnknownRelease(f"v{to} is not a release number (they start at v1)")
        if to == live.release:
            raise UnknownRelease(f"v{to} is the live release of {app}: nothing to roll back")
        found = [r for r in releases if r.release == to]
        if not found:
            if to < releases[0].release:
                raise ReleaseNotKept(f"v{to} is no longer kept ({KEEP_SETTING}={keep})")
            went_live = ", ".join(f"v{r.release}" for r in kept_releases(history, keep))
            raise UnknownRelease(f"{app} has no release v{to} that went live (kept: {went_live})")
        chosen = found[0]
    if chosen.release not in {r.release for r in kept_releases(history, keep)}:
        raise ReleaseNotKept(f"v{chosen.release} is no longer kept ({KEEP_SETTING}={keep})")
    return chosen


def hook_plan(plan: Plan) -> Plan:
    """The plan a rollback runs: its `rollback_hooks` setting says which hook phases stay
    ("release": predeploy and release; "all"; "none"). On-failure always stays."""
    if plan.rollback_hooks == "all":
        return plan
    if plan.rollback_hooks == "release":
        return msgspec.structs.replace(plan, postdeploy=[], after_switch=[])
    return msgspec.structs.replace(plan, predeploy=[], release=[], postdeploy=[],
                                   after_switch=[])


def hooks_line(plan: Plan) -> str:
    """The deploy-log line saying which hooks the rollback runs, and why."""
    return (f"rollback hooks: {_HOOKS[plan.rollback_hooks]} (rollback_hooks = "
            f"\"{plan.rollback_hooks}\" in the release's dockyard.toml)")


def rollback_spec(to: LiveRelease) -> DeploySpec:
    """The spec of a new release that runs `to`'s build with `to`'s config version pinned.

    With the release phase run, predeploy starts again from the image as built (as a config
    release does); with no hook run, the artifact is `to`'s own (predeploy's changes included).
    """
    spec = to.spec
    plan = hook_plan(spec.plan)
    base = spec.build_artifact or spec.artifact
    artifact = spec.artifact if plan.rollback_hooks == "none" else base
    return msgspec.structs.replace(spec, artifact=artifact, build_artifact=base, plan=plan,
                                   kind="rollback", rolled_back_to=to.release)
