"""Hook-runner handlers: a phase's trigger event in, the phase's outcome event out, once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from faststream.nats.annotations import NatsMessage

from dockyard.bus.logs import DeployLog
from dockyard.bus.service import ServiceContext
from dockyard.contract.events import (
    RUN_NOT_RUN,
    BuildSucceeded,
    DeployAborted,
    DeployFailed,
    DeploySpec,
    Event,
    Fact,
    HookFailed,
    HookStarted,
    ReleaseFailed,
    ReleaseStarted,
    RunRequested,
    SpecData,
    StartSucceeded,
    TrafficSwitched,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import DEFAULT_MEMORY
from dockyard.hook_runner import decide
from dockyard.pipeline.artifacts import disposable_artifacts
from dockyard.pipeline.env import oneoff_env
from dockyard.pipeline.phases import PhaseRun, run_phase
from dockyard.pipeline.rollback import kept_specs
from dockyard.pipeline.step import Steps, working
from dockyard.runtime.base import OneOffSpec
from dockyard.runtime.select import Runtimes

if TYPE_CHECKING:
    from dockyard.hook_runner.app import HookRunnerDoors

log = structlog.get_logger()

CONFIG_STEP = "config-version"
# On-failure of a deploy the watchdog ended ran (there is no outcome event: the deploy ended).
AFTER_TIMEOUT_STEP = "on-failure-after-timeout"


class _NotCancelled:
    """The on-failure of a timed-out deploy runs although the deploy is marked cancelled."""

    async def reason(self, deployment_id: str) -> str | None:
        del deployment_id
        return None

    @contextlib.asynccontextmanager
    async def watching(self, deployment_id: str) -> AsyncIterator[asyncio.Event]:
        del deployment_id
        yield asyncio.Event()

# The step record of a one-off run (keyed by its run id): how it ended.
RUN_STEP = "run"
# A one-off's CONTAINER and DOCKYARD_PHASE (Heroku names its one-off dynos run.N).
RUN_CONTAINER = "run"
RUN_PHASE = "run"


class RunEnd(msgspec.Struct, frozen=True, kw_only=True):
    """How a one-off run ended: its last log line and the exit code on it."""

    text: str
    exit_code: int


class HookRunner:
    """Runs each hook phase once per deployment, in one-off containers of the release."""

    def __init__(self, ctx: ServiceContext, doors: HookRunnerDoors, runtimes: Runtimes) -> None:
        self.doors = doors
        self.runtimes = runtimes
        self.emitter = ctx.emitter
        self.nc = ctx.nc
        self.kill_grace = ctx.settings.kill_grace
        self.log_max_bytes = ctx.settings.log_max_bytes
        self.keep_releases = ctx.settings.keep_releases
        self.steps = Steps(doors.steps, ctx.emitter, ctx.settings.ack_wait / 3)

    async def on_build_succeeded(self, event: BuildSucceeded, msg: NatsMessage) -> None:
        """Predeploy (changes committed into the artifact), then release (changes discarded)."""
        await self.steps.once(event.deployment_id, "release-phase", msg,
                              partial(self._release, event))

    async def on_start_succeeded(self, event: StartSucceeded, msg: NatsMessage) -> None:
        """Postdeploy: new instances healthy, not routed; success opens the gate to the switch."""
        await self.steps.once(event.deployment_id, "postdeploy-phase", msg,
                              partial(self._postdeploy, event))

    async def on_traffic_switched(self, event: TrafficSwitched, msg: NatsMessage) -> None:
        """After-switch: traffic is on the new release whatever happens here (fortrabbit)."""
        await self.steps.once(event.deployment_id, "after-switch-phase", msg,
                              partial(self._after_switch, event))

    async def on_deploy_aborted(self, event: DeployAborted, msg: NatsMessage) -> None:
        """On-failure commands, told the status and reason; then the deploy ends, lock released."""
        if await self.doors.timeouts.timed_out(event.deployment_id) is not None:
            # The watchdog ended it (on_deploy_failed runs on-failure): no second end.
            log.info("late abort of a timed-out deploy ignored", app=event.subject,
                     deployment_id=event.deployment_id)
            return
        await self.steps.once(event.deployment_id, "on-failure-phase", msg,
                              partial(self._on_failure, event))
        await self.doors.locks.release(event.subject, event.deployment_id)
        log.info("deployed", app=event.subject, deployment_id=event.deployment_id,
                 release=event.release, status=event.data.status)

    async def on_deploy_failed(self, event: DeployFailed, msg: NatsMessage) -> None:
        """A deploy the watchdog ended (`timeout`), maybe while we were down: its on-failure
        commands run once (outside the lock, which moved on), then its artifacts go."""
        spec = event.data.spec
        if event.data.status != "timeout" or spec is None:
            return
        done = (await self.doors.steps.get(event.deployment_id, AFTER_TIMEOUT_STEP) is not None
                or await self.doors.steps.get(event.deployment_id, "on-failure-phase") is not None)
        if done:
            return
        # Timed out before the release phase chose its config version: it is chosen now.
        spec = decide.pinned(spec, await self._config_version(event.subject,
                                                              event.deployment_id, spec))
        async with working(msg, self.steps.beat):
            deploy_log = self._log(event)
            if spec.plan.on_failure:
                run = await self._run(event, spec, decide.failure_env(event.data), deploy_log)
                run = dataclasses.replace(run, cancels=_NotCancelled())
                result = await run_phase(run, Phase.ON_FAILURE, spec.plan.on_failure)
                if not result.ok:
                    await deploy_log.system(f"on-failure: {result.reason(Phase.ON_FAILURE)}")
            await self._dispose(event, spec)
            await deploy_log.flush()
        await self.doors.steps.put(event.deployment_id, AFTER_TIMEOUT_STEP, b"")

    async def on_run_requested(self, cmd: RunRequested, msg: NatsMessage) -> None:
        """A one-off from the app's live release, with that release's config: its output, then
        a last line with its exit code, on dockyard.log.<run_id>. Once: the ending is recorded
        before it is published, so a redelivered request only publishes the same last line
        again (dropped as a duplicate). Takes no deploy lock: a one-off may run beside a
        deploy, from the release live when it starts."""
        run_log = DeployLog(self.nc, cmd.app, cmd.run_id, "hook-runner",
                            max_bytes=self.log_max_bytes)
        recorded = await self.doors.steps.get(cmd.run_id, RUN_STEP)
        if recorded is not None:
            end = msgspec.json.decode(recorded, type=RunEnd)
        else:
            async with working(msg, self.steps.beat):
                end = await self._oneoff(cmd, run_log)
            await self.doors.steps.put(cmd.run_id, RUN_STEP, msgspec.json.encode(end))
        await run_log.end(end.text, end.exit_code)
        log.info("ran one-off", app=cmd.app, run_id=cmd.run_id, exit_code=end.exit_code)

    async def _oneoff(self, cmd: RunRequested, run_log: DeployLog) -> RunEnd:
        live = await self.doors.routes.live(cmd.app)
        if (reason := decide.run_refusal(cmd, live)) is not None:
            return RunEnd(text=reason, exit_code=RUN_NOT_RUN)
        assert live is not None, "run_refusal refuses an app with no live release"
        spec = live.spec
        values = await self.doors.config.at_version(cmd.app, spec.config_version)
        run_log.secrets = values
        env = oneoff_env(values, app=cmd.app, container=RUN_CONTAINER, artifact=spec.artifact,
                         release=live.release, deployment_id=cmd.run_id, phase=RUN_PHASE)
        oneoff = OneOffSpec(app=cmd.app, deployment_id=cmd.run_id, release=live.release,
                            phase=RUN_PHASE, container=RUN_CONTAINER, artifact=spec.artifact,
                            command=cmd.command, env=env, timeout=cmd.timeout,
                            memory=DEFAULT_MEMORY, kill_grace=self.kill_grace)
        await run_log.system(f"running on release v{live.release}: {cmd.command}")
        try:
            runtime = await self.runtimes.get(spec.runtime)
            outcome = await runtime.run_oneoff(oneoff, run_log)
        except Exception as exc:  # the runtime itself failed: the command did not run
            log.exception("one-off failed to run", app=cmd.app, run_id=cmd.run_id)
            return RunEnd(text=run_log.clean(f"could not run the command: {exc}"),
                          exit_code=RUN_NOT_RUN)
        text, code = decide.run_end(outcome.exit_code, outcome.duration, cmd.timeout,
                                    timed_out=outcome.timed_out, cancelled=outcome.cancelled)
        return RunEnd(text=text, exit_code=code)

    async def _release(self, event: BuildSucceeded) -> Event[Any]:
        spec = decide.pinned(event.data.spec, await self._config_version(
            event.subject, event.deployment_id, event.data.spec))
        if (reason := await self.doors.cancels.reason(event.deployment_id)) is not None:
            return self.emitter.after(event, decide.cancelled(ReleaseFailed, reason, spec))
        await self.emitter.emit(self.emitter.after(event, Fact.of(ReleaseStarted,
                                                                  SpecData(spec=spec))))
        async with self.doors.locks.hold(event.subject, event.deployment_id):
            run = await self._run(event, spec)
            predeploy = await run_phase(run, Phase.PREDEPLOY, spec.plan.predeploy, commit=True)
            release = None
            if predeploy.ok:
                run.artifact = predeploy.artifact
                release = await run_phase(run, Phase.RELEASE, spec.plan.release)
        await run.deploy_log.flush()
        return self.emitter.after(event, decide.release_outcome(spec, predeploy, release))

    async def _postdeploy(self, event: StartSucceeded) -> Event[Any]:
        placed = event.data
        if (reason := await self.doors.cancels.reason(event.deployment_id)) is not None:
            return self.emitter.after(event, decide.cancelled(HookFailed, reason, placed.spec))
        await self.emitter.emit(self.emitter.after(event, Fact.of(HookStarted, placed)))
        async with self.doors.locks.hold(event.subject, event.deployment_id):
            run = await self._run(event, placed.spec)
            live = await self.doors.routes.live(event.subject)
            live_release = live.release if live is not None else None
            commands, skipped = decide.first_deploy_split(placed.spec.plan.postdeploy,
                                                          live_release)
            for command in skipped:
                assert live_release is not None, "only a live app skips commands"
                await run.deploy_log.system(decide.skipped_line(command, live_release))
            result = await run_phase(run, Phase.POSTDEPLOY, commands)
        await run.deploy_log.flush()
        return self.emitter.after(event, decide.postdeploy_outcome(placed, result))

    async def _after_switch(self, event: TrafficSwitched) -> Event[Any]:
        spec = event.data.spec
        async with self.doors.locks.hold(event.subject, event.deployment_id):
            run = await self._run(event, spec)
            result = await run_phase(run, Phase.AFTER_SWITCH, spec.plan.after_switch)
        await run.deploy_log.flush()
        return self.emitter.after(event, decide.after_switch_outcome(spec, result))

    async def _on_failure(self, event: DeployAborted) -> Event[Any]:
        failed, spec = event.data, event.data.spec
        deploy_log = self._log(event)
        if spec is not None and spec.plan.on_failure:
            async with self.doors.locks.hold(event.subject, event.deployment_id):
                run = await self._run(event, spec, decide.failure_env(failed), deploy_log)
                result = await run_phase(run, Phase.ON_FAILURE, spec.plan.on_failure)
            if not result.ok:
                await deploy_log.system(f"on-failure: {result.reason(Phase.ON_FAILURE)}")
        elif spec is None:
            await deploy_log.system("no build to run on-failure commands from")
        if spec is not None:
            await self._dispose(event, spec)
        await deploy_log.system(f"deploy failed: {failed.status}: {failed.reason}")
        await deploy_log.flush()
        return self.emitter.after(event, decide.deploy_failed(failed))

    async def _config_version(self, app: str, deployment_id: str, spec: DeploySpec) -> int:
        """The config version this release is made with, chosen once (the current one; a
        rollback's is pinned to the earlier release's)."""
        if decide.config_pinned(spec):
            return spec.config_version
        chosen = await self.doors.steps.get(deployment_id, CONFIG_STEP)
        if chosen is not None:
            return int(chosen)
        version = (await self.doors.config.current(app)).version
        await self.doors.steps.put(deployment_id, CONFIG_STEP, str(version).encode())
        return version

    async def _run(self, event: Event[Any], spec: DeploySpec, extra: dict[str, str] | None = None,
                   deploy_log: DeployLog | None = None) -> PhaseRun:
        values = await self.doors.config.at_version(event.subject, spec.config_version)
        deploy_log = deploy_log or self._log(event)
        deploy_log.secrets = values
        return PhaseRun(trigger=event, artifact=spec.artifact, config=values,
                        runtime=await self.runtimes.get(spec.runtime), records=self.doors.steps,
                        cancels=self.doors.cancels, emitter=self.emitter, deploy_log=deploy_log,
                        kill_grace=self.kill_grace, extra_env=extra or {})

    def _log(self, event: Event[Any]) -> DeployLog:
        return DeployLog(self.nc, event.subject, event.deployment_id, "hook-runner",
                         max_bytes=self.log_max_bytes)

    async def _dispose(self, event: Event[Any], spec: DeploySpec) -> None:
        """Remove the artifacts the failed deploy made, once on-failure ran from them (never a
        kept release's: a failed rollback ran one)."""
        live = await self.doors.routes.live(event.subject)
        kept = kept_specs(await self.doors.routes.live_history(event.subject),
                          self.keep_releases)
        runtime = await self.runtimes.get(spec.runtime)
        for artifact in disposable_artifacts(spec, live, kept):
            try:
                await runtime.remove_artifact(artifact)
            except Exception:  # a leftover artifact must not keep the deploy from ending
                log.warning("artifact not removed", app=event.subject, artifact=artifact,
                            deployment_id=event.deployment_id, exc_info=True)
