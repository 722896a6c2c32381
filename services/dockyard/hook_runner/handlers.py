"""Hook-runner handlers: a phase's trigger event in, the phase's outcome event out, once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from faststream.nats.annotations import NatsMessage

from dockyard.bus.logs import DeployLog
from dockyard.bus.service import ServiceContext
from dockyard.contract.events import (
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
    SpecData,
    StartSucceeded,
    TrafficSwitched,
)
from dockyard.contract.phase import Phase
from dockyard.hook_runner import decide
from dockyard.pipeline.artifacts import disposable_artifacts
from dockyard.pipeline.phases import PhaseRun, run_phase
from dockyard.pipeline.rollback import kept_specs
from dockyard.pipeline.step import Steps, working
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
