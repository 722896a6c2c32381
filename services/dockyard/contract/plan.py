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
