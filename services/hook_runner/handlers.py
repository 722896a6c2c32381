"""Hook-runner handlers: a phase's trigger event in, the phase's outcome event out."""

from __future__ import annotations


import structlog
from faststream.nats.annotations import NatsMessage

from dockyard.bus.logs import DeployLog
from dockyard.pipeline import config, lock
from dockyard.pipeline.step import StepService
from dockyard.pipeline.live import live_release
from dockyard.pipeline.phases import PhaseResult, PhaseRun, run_phase
from dockyard.scheduler.placement import disposable_artifacts
from dockyard.schemas.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildSucceeded,
    DeployAborted,
    DeployFailed,
    DeploySpec,
    Event,
    HookFailed,
    HookStarted,
    HookSucceeded,
    ReleaseFailed,
    ReleaseStarted,
    ReleaseSucceeded,
    StartSucceeded,
    TrafficSwitched,
)

log = structlog.get_logger()


class HookRunner(StepService):
    """Runs each hook phase once per deployment, in one-off containers of the release."""

    service = "hook-runner"

    async def _phase_run(self, event: Event, spec: DeploySpec, deploy_log: DeployLog,
                         extra_env: dict[str, str] | None = None) -> PhaseRun:
        values = await config.at_version(self.stores.config, event.subject, spec.config_version)
        deploy_log.secrets = [v for v in values.values() if v]
        return PhaseRun(app=event.subject, deployment_id=event.deployment_id,
                        release=event.release, artifact=spec.artifact, config=values,
                        runtime=await self.runtimes.get(spec.runtime), stores=self.stores,
                        emitter=self.emitter, deploy_log=deploy_log,
                        kill_grace=self.ctx.settings.kill_grace, extra_env=extra_env or {})

    async def on_build_succeeded(self, event: BuildSucceeded, msg: NatsMessage) -> None:
        """Predeploy (changes committed into the artifact), then release (changes discarded)."""

        async def body() -> Event:
            spec = event.spec
            if (stopped := await self._cancelled(event, ReleaseFailed, spec)) is not None:
                return stopped
            await self.emitter.forward(ReleaseStarted, event, spec=spec)
            deploy_log = self._log(event)
            async with lock.hold(self.stores.locks, event.subject, event.deployment_id):
                run = await self._phase_run(event, spec, deploy_log)
                result = await run_phase(run, "predeploy", spec.plan.predeploy, commit=True)
                phase = "predeploy"
                if result.ok:
                    run.artifact = result.artifact
                    phase = "release"
                    result = await run_phase(run, "release", spec.plan.release)
            await deploy_log.flush()
            if not result.ok:
                # The spec names predeploy's committed artifact, so cleanup can remove it too.
                return await self._failed(ReleaseFailed, event,
                                          _with_artifact(spec, result.artifact), result, phase,
                                          "release-error")
            new_spec = _with_artifact(spec, result.artifact)
            return await self.emitter.forward(ReleaseSucceeded, event, spec=new_spec)

        await self._once(event, "release-phase", msg, body)

    async def on_start_succeeded(self, event: StartSucceeded, msg: NatsMessage) -> None:
        """Postdeploy: new instances healthy, not routed; success opens the gate to the switch."""

        async def body() -> Event:
            if (stopped := await self._cancelled(event, HookFailed, event.spec)) is not None:
                return stopped
            await self.emitter.forward(HookStarted, event, spec=event.spec,
                                       instances=event.instances)
            deploy_log = self._log(event)
            async with lock.hold(self.stores.locks, event.subject, event.deployment_id):
                run = await self._phase_run(event, event.spec, deploy_log)
                result = await run_phase(run, "postdeploy", event.spec.plan.postdeploy)
            await deploy_log.flush()
            if not result.ok:
                return await self._failed(HookFailed, event, event.spec, result, "postdeploy",
                                          "hook-error")
            return await self.emitter.forward(HookSucceeded, event, spec=event.spec,
                                              instances=event.instances)

        await self._once(event, "postdeploy-phase", msg, body)

    async def on_traffic_switched(self, event: TrafficSwitched, msg: NatsMessage) -> None:
        """After-switch: traffic is on the new release whatever happens here (fortrabbit)."""

        async def body() -> Event:
            deploy_log = self._log(event)
            async with lock.hold(self.stores.locks, event.subject, event.deployment_id):
                run = await self._phase_run(event, event.spec, deploy_log)
                result = await run_phase(run, "after_switch", event.spec.plan.after_switch)
            await deploy_log.flush()
            if not result.ok:
                return await self._failed(AfterSwitchFailed, event, event.spec, result,
                                          "after-switch", "hook-error")
            return await self.emitter.forward(AfterSwitchSucceeded, event, spec=event.spec)

        await self._once(event, "after-switch-phase", msg, body)

    async def on_deploy_aborted(self, event: DeployAborted, msg: NatsMessage) -> None:
        """On-failure commands, told the status and reason; then the deploy ends, lock released."""

        async def body() -> Event:
            deploy_log = self._log(event)
            spec = event.spec
            if spec is not None and spec.plan.on_failure:
                extra = {"DOCKYARD_FAILURE_STATUS": event.status,
                         "DOCKYARD_FAILURE_REASON": event.reason}
                async with lock.hold(self.stores.locks, event.subject, event.deployment_id):
                    run = await self._phase_run(event, spec, deploy_log, extra)
                    result = await run_phase(run, "on_failure", spec.plan.on_failure)
                if not result.ok:
                    await deploy_log.system(f"on-failure: {result.reason('on-failure')}")
            elif spec is None:
                await deploy_log.system("no build to run on-failure commands from")
            if spec is not None:
                await self._dispose(event, spec)
            await deploy_log.system(f"deploy failed: {event.status}: {event.reason}")
            await deploy_log.flush()
            ended = await self.emitter.forward(
                DeployFailed, event, status=event.status, reason=event.reason,
                exit_code=event.exit_code, tail=event.tail, command=event.command)
            await lock.release(self.stores.locks, event.subject, event.deployment_id)
            log.info("deployed", app=event.subject, deployment_id=event.deployment_id,
                     release=event.release, status=event.status)
            return ended

        await self._once(event, "on-failure-phase", msg, body)

    async def _dispose(self, event: DeployAborted, spec: DeploySpec) -> None:
        """Remove the artifacts the failed deploy made, once on-failure ran from them."""
        live = await live_release(self.stores.state, event.subject)
        runtime = await self.runtimes.get(spec.runtime)
        for artifact in disposable_artifacts(spec, live):
            try:
                await runtime.remove_artifact(artifact)
            except Exception:  # a leftover artifact must not keep the deploy from ending
                log.warning("artifact not removed", app=event.subject, artifact=artifact,
                            deployment_id=event.deployment_id, exc_info=True)

    async def _failed(self, cls: type[Event], event: Event, spec: DeploySpec,
                      result: PhaseResult, phase: str, status: str) -> Event:
        return await self.emitter.forward(
            cls, event, spec=spec, status="cancelled" if result.cancelled else status,
            reason=result.reason(phase), exit_code=result.exit_code, tail=result.tail,
            command=result.failed.command if result.failed else None)


def _with_artifact(spec: DeploySpec, artifact: str) -> DeploySpec:
    import msgspec

    return msgspec.structs.replace(spec, artifact=artifact)
