"""The merged, ordered deploy plan: what every phase will run, and where each command came from."""

from __future__ import annotations

from typing import Literal

import msgspec

from dockyard.contract.manifest import RollbackHooks
from dockyard.contract.phase import HOOK_PHASES, Phase

DEFAULT_TIMEOUTS: dict[Phase, float] = {
    Phase.PREDEPLOY: 30 * 60,
    Phase.RELEASE: 30 * 60,
    Phase.POSTDEPLOY: 20 * 60,
    Phase.AFTER_SWITCH: 20 * 60,
    Phase.ON_FAILURE: 10 * 60,
}
DEFAULT_MEMORY = 512 * 1024 * 1024


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One command of a phase."""

    label: str
    command: str
    timeout: float
    memory: int = DEFAULT_MEMORY
    source: str = ""
    # Skipped once the app has a live release (app.json `scripts.postdeploy`, Heroku and Dokku).
    first_deploy_only: bool = False


class ProcessType(msgspec.Struct, frozen=True, kw_only=True):
    """One process type (`web`, `worker`) and how many instances run."""

    name: str
    command: str
    scale: int = 1
    source: str = ""


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """How a new `web` instance proves it is ready: TCP connect, or HTTP GET path answering 2xx."""

    path: str | None = None
    timeout: float = 60.0
    interval: float = 0.2


class BuildConfig(msgspec.Struct, frozen=True, kw_only=True):
    # One line: the docstring is this type's description in the generated schemas/.
    """How the artifact is built: the Dockerfile (docker) or a command run in the release dir (process)."""  # noqa: E501

    dockerfile: str = "Dockerfile"
    command: str | None = None
    timeout: float = 30 * 60


class BuildStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a detected build, as data: each runtime renders its `kind` into commands."""

    label: str
    kind: str
    file: str | None = None  # the dependency file it reads: named when the step fails
    args: list[str] = []
    # Installs dependencies (kept in the cache and skipped while the lock files are unchanged);
    # otherwise it runs on every build (`npm run build`).
    installs: bool = True


class Buildpack(msgspec.Struct, frozen=True, kw_only=True):
    """What the source is and how it is built without a Dockerfile (detected, not configured)."""

    language: str = "none"  # python | node | static | none
    dockerfile: bool = False  # the source has its Dockerfile: the docker runtime builds that
    detected: list[str] = []  # the files that told
    version: str | None = None  # the interpreter asked for: "3.11" (python), ">=18" (node)
    version_file: str | None = None  # where it was asked for
    lock_files: list[str] = []  # what the dependencies depend on: unchanged → nothing installed
    deps_dir: str | None = None  # what the install makes: ".venv", "node_modules"
    needs_source: bool = False  # the install reads the whole tree (`-e .`): no dependency layer
    steps: list[BuildStep] = []
    env: dict[str, str] = {}  # conventions every process and one-off gets (the app's config wins)
    path: list[str] = []  # release-relative dirs put first on PATH


# The router splits an app's traffic in twentieths (its dial slots): a canary step's share is a
# multiple of 5 %.
SHARE_STEP = 5
Inconclusive = Literal["promote", "abort"]


class Rollout(msgspec.Struct, frozen=True, kw_only=True):
    """A canary: once postdeploy passed, the new release takes `steps` percent of the requests
    in turn (sticky per client), each held `hold` seconds and promoted only while its error rate
    and p95 latency stay within the thresholds relative to the old release's over the step."""

    steps: list[int] = msgspec.field(default_factory=lambda: [5, 25])
    hold: float = 60.0
    max_error_increase: float = 0.02  # new error rate may exceed the old one by this much
    max_latency_ratio: float = 1.5  # new p95 may be this many times the old p95
    min_requests: int = 20  # fewer new-release requests in a step: inconclusive
    inconclusive: Inconclusive = "promote"
    # After the switch to every request, the old release stays warm (not routed) this long;
    # crossing the thresholds inside it switches back. 0: no window.
    watch: float = 0.0


MAX_STEPS = 10


class RolloutError(ValueError):
    """A rollout that cannot be given as asked (named in the message)."""


def check_steps(steps: list[int]) -> list[int]:
    """Canary steps the router can give: at most MAX_STEPS shares, each a multiple of 5 between
    5 and 95, growing (RolloutError naming the first that is not)."""
    if len(steps) > MAX_STEPS:
        raise RolloutError(f"at most {MAX_STEPS} canary steps (percent of requests the new "
                           f"release takes in turn), e.g. [5, 25]; got {len(steps)}")
    for i, share in enumerate(steps):
        if isinstance(share, bool) or not 0 < share < 100 or share % SHARE_STEP:
            raise RolloutError(f"{share} is not a share the router can give: a multiple of "
                               f"{SHARE_STEP} between {SHARE_STEP} and {100 - SHARE_STEP} "
                               f"(100 % is the promotion after the last step)")
        if i and share <= steps[i - 1]:
            raise RolloutError(f"canary steps must grow: {share} comes after {steps[i - 1]}")
    return steps


class RolloutOverride(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A deploy's own rollout, over the manifest's [rollout] (`dockyard deploy --canary 5,25
    --hold 30s --watch 5m`, or `--no-rollout`): each field given replaces the manifest's."""

    steps: list[int] | None = None
    hold: float | None = None
    watch: float | None = None
    off: bool = False  # every request at once, whatever the manifest says


MAX_HOLD = 24 * 3600.0


def checked_override(override: RolloutOverride) -> RolloutOverride:
    """The override, if it can be given (RolloutError naming the problem); a publisher other
    than the CLI or the api is checked as strictly."""
    if override.off and (override.steps is not None or override.hold is not None
                         or override.watch is not None):
        raise RolloutError("no rollout (--no-rollout) goes with no step, hold or watch")
    if override.steps is not None:
        check_steps(override.steps)
    if override.hold is not None and not 0 < override.hold <= MAX_HOLD:
        raise RolloutError(f"a canary step is held more than 0 s and at most {MAX_HOLD:g} s, "
                           f"got {override.hold:g}")
    if override.watch is not None and not 0 <= override.watch <= MAX_HOLD:
        raise RolloutError(f"a watch window lasts 0 s to {MAX_HOLD:g} s, got {override.watch:g}")
    return override


def overridden(rollout: Rollout | None, override: RolloutOverride | None) -> Rollout | None:
    """The rollout a deploy goes through: the manifest's, with the request's fields over it
    (a watch alone adds no canary); None: every request at once."""
    if override is None:
        return rollout
    if override.off:
        return None
    base = rollout or Rollout(steps=[])
    changed = msgspec.structs.replace(
        base, steps=base.steps if override.steps is None else list(override.steps),
        hold=base.hold if override.hold is None else override.hold,
        watch=base.watch if override.watch is None else override.watch)
    return changed if changed.steps or changed.watch else None


def watches(plan: Plan, kind: str) -> float:
    """The watch window a deploy of this plan goes through after its switch (0: none): the
    router watches it, the scheduler ends the deploy only once the router says how it went.
    A rollback has none (it is wanted at once)."""
    if plan.rollout is None or kind == "rollback":
        return 0.0
    return plan.rollout.watch


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a deploy runs, in order, with where each part came from."""

    processes: list[ProcessType] = []
    predeploy: list[Command] = []
    release: list[Command] = []
    postdeploy: list[Command] = []
    after_switch: list[Command] = []
    on_failure: list[Command] = []
    health: Health = Health()
    build: BuildConfig = BuildConfig()
    drain: float = 30.0
    notes: list[str] = []
    buildpack: Buildpack = msgspec.field(default_factory=Buildpack)
    rollback_hooks: RollbackHooks = "release"
    rollout: Rollout | None = None  # None: the switch sends every request at once

    def commands(self, phase: Phase) -> list[Command]:
        """The commands of one hook phase."""
        if phase not in HOOK_PHASES:
            raise KeyError(phase)
        result: list[Command] = getattr(self, phase.value)
        return result
