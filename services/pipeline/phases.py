"""Run the commands of one hook phase in order, one at a time, each recorded so none runs twice."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import msgspec
import structlog

from dockyard.bus.logs import DeployLog, heading, subheading
from dockyard.bus.topology import Stores
from dockyard.pipeline import cancel, runs
from dockyard.pipeline.emit import Emitter
from dockyard.pipeline.env import oneoff_env
from dockyard.runtime.base import TIMEOUT_EXIT_CODE, OneOffSpec, Runtime
from dockyard.schemas.events import CommandFinished, CommandStarted
from dockyard.schemas.plan import Command

log = structlog.get_logger()

# Names used in CONTAINER (`postdeploy-1`) and DOCKYARD_PHASE.
PHASE_NAMES = {"predeploy": "predeploy", "release": "release", "postdeploy": "postdeploy",
               "after_switch": "after-switch", "on_failure": "on-failure"}


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one finished command left behind."""

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

    def reason(self, phase: str) -> str:
        """One sentence on why the phase failed."""
        if self.failed is None:
            return f"{phase} failed"
        if self.cancelled:
            return f"cancelled during {phase} command '{self.failed.label}'"
        if self.timed_out:
            return (f"{phase} command '{self.failed.label}' timed out after "
                    f"{self.failed.timeout:g}s (exit code {TIMEOUT_EXIT_CODE})")
        return f"{phase} command '{self.failed.label}' exited with code {self.exit_code}"


@dataclass
class PhaseRun:
    """Everything a phase needs to run its commands for one deployment."""

    app: str
    deployment_id: str
    release: int
    artifact: str
    config: dict[str, str]
    runtime: Runtime
    stores: Stores
    emitter: Emitter
    deploy_log: DeployLog
    kill_grace: float = 10.0
    extra_env: dict[str, str] = field(default_factory=dict)


async def run_phase(run: PhaseRun, phase: str, commands: list[Command],
                    commit: bool = False) -> PhaseResult:
    """Run a phase's commands in order; stop at the first failure."""
    artifact = run.artifact
    if not commands:
        return PhaseResult(ok=True, artifact=artifact)
    name = PHASE_NAMES[phase]
    await run.deploy_log.system(heading(name))
    total = len(commands)
    for index, command in enumerate(commands, start=1):
        step = f"cmd.{phase}.{index}"
        result = await _recorded(run, step)
        if result is None:
            result = await _run_command(run, phase, name, command, index, total, artifact, commit)
            await runs.record(run.stores.runs, run.deployment_id, step, msgspec.json.encode(result))
        if result.exit_code != 0:
            return PhaseResult(ok=False, artifact=artifact, failed=command,
                               exit_code=result.exit_code, tail=result.tail,
                               timed_out=result.timed_out, cancelled=result.cancelled)
        if result.artifact:
            artifact = result.artifact
    return PhaseResult(ok=True, artifact=artifact)


async def _recorded(run: PhaseRun, step: str) -> StepResult | None:
    data = await runs.done(run.stores.runs, run.deployment_id, step)
    return None if data is None else msgspec.json.decode(data, type=StepResult)


async def _run_command(run: PhaseRun, phase: str, name: str, command: Command, index: int,
                       total: int, artifact: str, commit: bool) -> StepResult:
    container = f"{name}-{index}"
    await run.deploy_log.system(subheading(command.label, index, total))
    await run.deploy_log.system(f"$ {command.command}  [{command.source}]")
    run.deploy_log.take_tail()
    common = dict(hook_phase=name, label=command.label, index=index, total=total,
                  command=command.command)
    await run.emitter.emit(CommandStarted, app=run.app, deployment_id=run.deployment_id,
                           release=run.release, id_parts=(phase, index), **common)
    env = oneoff_env(run.config, app=run.app, container=container, artifact=artifact,
                     release=run.release, deployment_id=run.deployment_id, phase=name,
                     extra=run.extra_env)
    spec = OneOffSpec(app=run.app, deployment_id=run.deployment_id, release=run.release,
                      phase=name, container=container, artifact=artifact,
                      command=command.command, env=env, timeout=command.timeout,
                      memory=command.memory, kill_grace=run.kill_grace, commit=commit)
    stop = asyncio.Event()
    watcher = asyncio.create_task(cancel.watch(run.stores.cancel, run.deployment_id, stop))
    started = time.monotonic()
    try:
        outcome = await run.runtime.run_oneoff(spec, run.deploy_log, stop)
    except Exception as exc:  # the runtime itself failed: the command did not succeed
        log.exception("one-off failed to run", app=run.app, deployment_id=run.deployment_id)
        await run.deploy_log.system(f"could not run the command: {exc}")
        outcome = None
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    duration = time.monotonic() - started
    if outcome is None:
        result = StepResult(exit_code=1, duration=duration, tail=run.deploy_log.take_tail())
    else:
        if outcome.timed_out:
            await run.deploy_log.system(
                f"timed out after {command.timeout:g}s: stopped (SIGTERM, then SIGKILL)")
        if outcome.cancelled:
            await run.deploy_log.system("cancelled: stopped")
        result = StepResult(exit_code=outcome.exit_code, duration=outcome.duration,
                            tail=run.deploy_log.take_tail(), artifact=outcome.artifact,
                            timed_out=outcome.timed_out, cancelled=outcome.cancelled)
    await run.deploy_log.system(
        f"----- {command.label}: exit code {result.exit_code} in {result.duration:.1f}s -----")
    await run.emitter.emit(CommandFinished, app=run.app, deployment_id=run.deployment_id,
                           release=run.release, id_parts=(phase, index), exit_code=result.exit_code,
                           duration=round(result.duration, 3), tail=result.tail, **common)
    return result
