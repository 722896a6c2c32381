"""The small interface both runtimes implement, and the values that cross it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dockyard.contract.events import InstanceRef
from dockyard.contract.plan import Buildpack

TIMEOUT_EXIT_CODE = -128


class RuntimeError_(Exception):
    """Base of every runtime failure."""


class BuildError(RuntimeError_):
    """The artifact could not be built."""


class StartError(RuntimeError_):
    """An instance could not be started."""


class ContainmentError(BuildError, StartError):
    """An app cannot be contained as it must be (its user or its tree cannot be set up);
    nothing of it runs then."""


class LogSink(Protocol):
    """Where a runtime writes the output of what it runs (redaction happens behind it)."""

    async def line(self, text: str, stream: str = "out") -> None:
        """Write one line of output."""


@dataclass(frozen=True)
class OneOffSpec:
    """One command of a hook phase, run once, in isolation, from the release's artifact."""

    app: str
    deployment_id: str
    release: int
    phase: str
    container: str  # e.g. "postdeploy-1": the CONTAINER env var and the name's suffix
    artifact: str
    command: str
    env: dict[str, str]
    timeout: float
    memory: int
    kill_grace: float = 10.0
    commit: bool = False  # predeploy: keep the file changes in a new artifact


@dataclass(frozen=True)
class OneOffResult:
    """How a one-off command ended."""

    exit_code: int  # TIMEOUT_EXIT_CODE after its timeout
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    artifact: str | None = None  # the new artifact, when spec.commit


@dataclass(frozen=True)
class InstanceSpec:
    """One instance of one process type of one release."""

    app: str
    deployment_id: str
    release: int
    process: str
    index: int
    artifact: str
    command: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputLine:
    """One line a running instance wrote, and where its output goes on after it."""

    text: str
    cursor: str  # give it back to follow_output to go on after this line
    stream: str = "out"


class Runtime(Protocol):
    """What the builder, hook-runner and scheduler need from wherever apps run."""

    name: str
    # How long a TCP health check's connection must stay open to count: more than 0 where a
    # forwarder in front of an instance's port accepts connections for it (see health.py).
    tcp_settle: float

    async def build(self, app: str, build_id: str, source: Path, log: LogSink, *,
                    dockerfile: str = "Dockerfile", command: str | None = None,
                    time_limit: float = 1800.0, buildpack: Buildpack | None = None) -> str:
        """Turn a source tree into an immutable artifact (its detected dependencies installed);
        returns its reference."""

    async def run_oneoff(
        self, spec: OneOffSpec, log: LogSink, cancel: asyncio.Event | None = None
    ) -> OneOffResult:
        """Run one command to its end, its timeout (SIGTERM, grace, SIGKILL) or cancel."""

    async def start_instance(self, spec: InstanceSpec) -> InstanceRef:
        """Start one instance; `web` listens on a loopback port given in $PORT."""

    async def stop_instance(self, ref: InstanceRef, grace: float) -> None:
        """Stop an instance: SIGTERM, wait up to grace, SIGKILL; then remove it."""

    async def list_instances(self, app: str) -> list[InstanceRef]:
        """Instances of an app that exist now (found again after a restart)."""

    def follow_output(self, app: str, ref: InstanceRef,
                      cursor: str | None = None) -> AsyncIterator[OutputLine]:
        """An instance's output by lines, from its start (or after `cursor`), then live, for
        as long as the caller reads."""

    async def remove_artifact(self, artifact: str) -> None:
        """Delete an artifact no release uses any more (in use or gone: ignored)."""

    async def remove_app(self, app: str) -> list[str]:
        """Remove everything of an app left on this runtime (its instances stopped first):
        containers, images and network on Docker; the app's tree and user on the process
        runtime; what was removed, one short line each (nothing left: none)."""

    async def close(self) -> None:
        """Release the runtime's connections."""
