"""The merged, ordered deploy plan: what every phase will run, and where each command came from."""

from __future__ import annotations

import msgspec

DEFAULT_TIMEOUTS: dict[str, float] = {
    "predeploy": 30 * 60,
    "release": 30 * 60,
    "postdeploy": 20 * 60,
    "after_switch": 20 * 60,
    "on_failure": 10 * 60,
}
DEFAULT_MEMORY = 512 * 1024 * 1024
HOOK_PHASES = ("predeploy", "release", "postdeploy", "after_switch", "on_failure")


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One command of a phase."""

    label: str
    command: str
    timeout: float
    memory: int = DEFAULT_MEMORY
    source: str = ""


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
    """How the artifact is built: the Dockerfile (docker) or a command run in the release dir (process)."""

    dockerfile: str = "Dockerfile"
    command: str | None = None
    timeout: float = 30 * 60


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

    def commands(self, phase: str) -> list[Command]:
        """The commands of one hook phase."""
        if phase not in HOOK_PHASES:
            raise KeyError(phase)
        result: list[Command] = getattr(self, phase)
        return result
