"""Run the commands of one hook phase in order, one at a time, each recorded so none runs twice."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from dockyard.bus.emit import Emitter
from dockyard.bus.logs import DeployLog, heading, subheading
from dockyard.contract.events import (
    CommandData,
    CommandFinished,
    CommandResultData,
    CommandStarted,
    Event,
    Fact,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import Command
from dockyard.pipeline.env import oneoff_env
from dockyard.runtime.base import TIMEOUT_EXIT_CODE, OneOffResult, OneOffSpec, Runtime
from dockyard.state.cancels import CancelReader
from dockyard.state.steps import StepRecords

log = structlog.get_logger()


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one finished command left behind (its step record)."""

    exit_code: int
    duration: float
    tail: list[str] = []
    artifact: str | None = None
    timed_out: bool = False
    cancelled: bool = False


@dataclass
class PhaseResult:
    """How a phase ended."""

    ok: bool
    artifact: str
    failed: Command | None = None
    exit_code: int | None = None
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    cancelled: bool = False

    def reason(self, phase: Phase) -> str:
        """One sentence on why the phase failed."""
        if self.failed is None:
            return f"{phase} failed"
        if self.cancelled:
            return f"cancelled during {phase} command '{self.failed.label}'"
        if self.timed_out:
            return (f"{phase} command '{self.failed.label}' timed out after "
                    f"{self.failed.timeout:g}s (exit code {TIMEOUT_EXIT_CODE})")
        return f"{phase} command '{self.failed.label}' exited with code {self.exit_code}"


def step_name(phase: Phase, index: int) -> str:
    """The step record of one command of a phase."""
    return f"cmd.{phase}.{index}"


def container_name(phase: Phase, index: int) -> str:
    """CONTAINER of a one-off (`postdeploy-1`)."""
    return f"{phase}-{index}"


def step_result(outcome: OneOffResult | None, duration: float, tail: list[str]) -> StepResult:
    """The record of a command: its outcome, or exit code 1 when the runtime could not run it."""
    if outcome is None:
        return StepResult(exit_code=1, duration=duration, tail=tail)
    return StepResult(exit_code=outcome.exit_code, duration=outcome.duration, tail=tail,
                      artifact=outcome.artifact, timed_out=outcome.timed_out,
                      cancelled=outcome.cancelled)


@dataclass
class PhaseRun:
    """Everything a phase needs to run its commands for one deployment."""

    trigger: Event[Any]
    artifact: str
    config: dict[str, str]
    runtime: Runtime
    records: StepRecords
    cancels: CancelReader
    emitter: Emitter
    deploy_log: DeployLog
    kill_grace: float = 10.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def app(self) -> str:
        """The app."""
        return self.trigger.subject

    @property
    def deployment_id(self) -> str:
        """The deployment."""
        return self.trigger.deployment_id


async def run_phase(run: PhaseRun, phase: Phase, commands: list[Command],
                    commit: bool = False) -> PhaseResult:
    """Run a phase's commands in order; stop at the first failure."""
    artifact = run.artifact
    if not commands:
        return PhaseResult(ok=True, artifact=artifact)
    await run.deploy_log.system(heading(phase))
    total = len(commands)
    for index, command in enumerate(commands, start=1):
        step = step_name(phase, index)
        recorded = await run.records.get(run.deployment_id, step)
        if recorded is not None:
            result = msgspec.json.decode(recorded, type=StepResult)
            # Killed between recording and announcing it: announce it now (same id, so a
            # duplicate is dropped), or the command would read as running forever.
            await _announce_finished(run, phase, command, index, total, result)
        else:
            result = await _run_command(run, phase, command, index, total, artifact, commit)
        if result.exit_code != 0:
            return PhaseResult(ok=False, artifact=artifact, failed=command,
                               exit_code=result.exit_code, tail=result.tail,
                               timed_out=result.timed_out, cancelled=result.cancelled)
        if result.artifact:
            artifact = result.artifact
    return PhaseResult(ok=True, artifact=artifact)


async def _run_command(run: PhaseRun, phase: Phase, command: Command, index: int, total: int,
                       artifact: str, commit: bool) -> StepResult:
    container = container_name(phase, index)
    await run.deploy_log.system(subheading(command.label, index, total))
    await run.deploy_log.system(f"$ {command.command}  [{command.source}]")
    run.deploy_log.take_tail()
    about = CommandData(hook_phase=phase, label=command.label, index=index, total=total,
                        command=command.command)
    await run.emitter.emit(run.emitter.after(
        run.trigger, Fact.of(CommandStarted, about, phase.value, index)))
    env = oneoff_env(run.config, app=run.app, container=container, artifact=artifact,
                     release=run.trigger.release, deployment_id=run.deployment_id, phase=phase,
                     extra=run.extra_env)
    spec = OneOffSpec(app=run.app, deployment_id=run.deployment_id, release=run.trigger.release,
                      phase=phase.value, container=container, artifact=artifact,
                      command=command.command, env=env, timeout=command.timeout,
                      memory=command.memory, kill_grace=run.kill_grace, commit=commit)
    started = time.monotonic()
    outcome: OneOffResult | None
    async with run.cancels.watching(run.deployment_id) as cancelled:
        try:
            outcome = await run.runtime.run_oneoff(spec, run.deploy_log, cancelled)
        except Exception as exc:  # the runtime itself failed: the command did not succeed
            log.exception("one-off failed to run", app=run.app, deployment_id=run.deployment_id)
            await run.deploy_log.system(f"could not run the command: {exc}")
            outcome = None
    if outcome is not None and outcome.timed_out:
        await run.deploy_log.system(
            f"timed out after {command.timeout:g}s: stopped (SIGTERM, then SIGKILL)")
    if outcome is not None and outcome.cancelled:
        await run.deploy_log.system("cancelled: stopped")
    result = step_result(outcome, time.monotonic() - started, run.deploy_log.take_tail())
    # Recorded before anything else can fail: a finished command never runs again.
    await run.records.put(run.deployment_id, step_name(phase, index), msgspec.json.encode(result))
    await run.deploy_log.system(
        f"----- {command.label}: exit code {result.exit_code} in {result.duration:.1f}s -----")
    await _announce_finished(run, phase, command, index, total, result)
    return result


async def _announce_finished(run: PhaseRun, phase: Phase, command: Command, index: int,
                             total: int, result: StepResult) -> None:
    finished = CommandResultData(hook_phase=phase, label=command.label, index=index, total=total,
                                 command=command.command, exit_code=result.exit_code,
                                 duration=round(result.duration, 3), tail=result.tail)
    await run.emitter.emit(run.emitter.after(
        run.trigger, Fact.of(CommandFinished, finished, phase.value, index)))
