"""Scheduler handlers: start new instances, remove them on failure, retire the old after a switch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from faststream.nats.annotations import NatsMessage

from dockyard.bus.logs import DeployLog, heading
from dockyard.pipeline import config, lock
from dockyard.pipeline.step import StepService
from dockyard.pipeline.env import instance_env
from dockyard.runtime.base import Runtime
from dockyard.runtime.health import wait_healthy
from dockyard.scheduler import placement
from dockyard.schemas.state import LiveRelease, live_key
from dockyard.schemas.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildFailed,
    DeployAborted,
    DeploySpec,
    DeploySucceeded,
    Event,
    HookFailed,
    InstanceRef,
    ReleaseFailed,
    ReleaseSucceeded,
    RetireSucceeded,
    StartFailed,
    StartStarted,
    StartSucceeded,
    TrafficFailed,
)

PreSwitchFailure = BuildFailed | ReleaseFailed | StartFailed | HookFailed | TrafficFailed

log = structlog.get_logger()


class Scheduler(StepService):
    """Owns instances: start, health, removal, retirement."""

    service = "scheduler"

    async def on_release_succeeded(self, event: ReleaseSucceeded, msg: NatsMessage) -> None:
        """Start every process type at its scale; wait for `web` to be healthy; not routed yet."""

        async def body() -> Event:
            spec = event.spec
            if (stopped := await self._cancelled(event, StartFailed, spec)) is not None:
                return stopped
            await self.emitter.forward(StartStarted, event, spec=spec)
            deploy_log = self._log(event)
            await deploy_log.system(heading("start"))
            runtime = await self.runtimes.get(spec.runtime)
            async with lock.hold(self.stores.locks, event.subject, event.deployment_id):
                # A crashed earlier attempt may have left instances: the runtime re-attaches to
                # them by deployment, process and index instead of starting them again.
                try:
                    instances = await self._start_all(runtime, event, spec, deploy_log)
                except Exception as exc:
                    await self._remove(runtime, event.subject, event.release)
                    await deploy_log.system(f"start failed: {exc}; new instances removed")
                    await deploy_log.flush()
                    return await self.emitter.forward(
                        StartFailed, event, status="start-error", reason=str(exc),
                        tail=deploy_log.take_tail(), spec=spec)
            await deploy_log.flush()
            return await self.emitter.forward(StartSucceeded, event, spec=spec,
                                              instances=instances)

        await self._once(event, "start-phase", msg, body)

    async def _start_all(self, runtime: Runtime, event: Event, spec: DeploySpec,
                         deploy_log: DeployLog) -> list[InstanceRef]:
        values = await config.at_version(self.stores.config, event.subject, spec.config_version)
        env_for = {
            f"{p.name}-{i}": instance_env(values, app=event.subject, process=p.name, index=i,
                                          artifact=spec.artifact, release=event.release,
                                          deployment_id=event.deployment_id)
            for p in spec.plan.processes for i in range(1, p.scale + 1)
        }
        wanted = placement.wanted(spec.plan, app=event.subject, deployment_id=event.deployment_id,
                                  release=event.release, artifact=spec.artifact, env_for=env_for)
        if not any(s.process == "web" for s in wanted):
            await deploy_log.system("no web process: nothing will be routed")
        started: list[InstanceRef] = []
        for want in wanted:
            ref = await runtime.start_instance(want)
            started.append(ref)
            await deploy_log.system(f"started {want.process}.{want.index} ({ref.id})"
                                    + (f" on port {ref.port}" if ref.port else ""))
        health = spec.plan.health
        for ref in started:
            if ref.process != "web" or ref.port is None:
                continue
            what = f"HTTP GET {health.path} answering 2xx" if health.path else "TCP connect"
            await deploy_log.system(f"waiting for {ref.id}: {what} within {health.timeout:g}s")
            await wait_healthy(ref.host, ref.port, health, _alive(runtime, event.subject, ref))
            await deploy_log.system(f"{ref.id} is healthy")
        return started

    async def _remove(self, runtime: Runtime, app: str, release: int) -> list[str]:
        removed: list[str] = []
        for ref in placement.of_release(await runtime.list_instances(app), release):
            await runtime.stop_instance(ref, self.ctx.settings.kill_grace)
            removed.append(ref.id)
        return removed

    async def on_pre_switch_failure(self, event: PreSwitchFailure, msg: NatsMessage) -> None:
        """A deploy failed before its switch: remove its new instances; on-failure comes next."""

        async def body() -> Event:
            if event.spec is not None:
                runtime = await self.runtimes.get(event.spec.runtime)
                removed = await self._remove(runtime, event.subject, event.release)
                if removed:
                    deploy_log = self._log(event)
                    await deploy_log.system(f"removed new instances: {', '.join(removed)}")
                    await deploy_log.flush()
                # Its artifacts stay until on-failure ran from them (the hook-runner removes them).
            return await self.emitter.forward(
                DeployAborted, event, status=event.status, reason=event.reason,
                exit_code=event.exit_code, tail=event.tail, command=event.command,
                spec=event.spec)

        await self._once(event, "abort", msg, body)

    async def on_after_switch_succeeded(self, event: AfterSwitchSucceeded,
                                        msg: NatsMessage) -> None:
        """The deploy succeeded; then the old instances drain and stop, and the lock is released."""

        async def body() -> Event:
            done = await self.emitter.forward(DeploySucceeded, event)
            log.info("deployed", app=event.subject, deployment_id=event.deployment_id,
                     release=event.release, status="succeeded")
            retired = await self._retire(event, event.spec)
            await lock.release(self.stores.locks, event.subject, event.deployment_id)
            return retired if retired is not None else done

        await self._once(event, "retire", msg, body)

    async def on_after_switch_failed(self, event: AfterSwitchFailed, msg: NatsMessage) -> None:
        """Traffic stays on the new release: retire the old, then the deploy ends failed."""

        async def body() -> Event:
            if event.spec is not None:
                await self._retire(event, event.spec)
            return await self.emitter.forward(
                DeployAborted, event, status=event.status, reason=event.reason,
                exit_code=event.exit_code, tail=event.tail, command=event.command,
                spec=event.spec)

        await self._once(event, "retire", msg, body)

    async def _retire(self, event: Event, spec: DeploySpec) -> Event | None:
        runtime = await self.runtimes.get(spec.runtime)
        deploy_log = self._log(event)
        async with lock.hold(self.stores.locks, event.subject, event.deployment_id):
            olds = placement.old(await runtime.list_instances(event.subject), event.release)
            if not olds:
                await self._drop_replaced(runtime, event, spec)
                return None
            drain = placement.drain_time(spec.plan.drain, self.ctx.settings.drain)
            await deploy_log.system(heading("retire"))
            await deploy_log.system(f"draining {len(olds)} old instance(s) for {drain:g}s")
            await asyncio.sleep(drain)
            for ref in olds:
                await runtime.stop_instance(ref, self.ctx.settings.kill_grace)
            await deploy_log.system(f"stopped {', '.join(r.id for r in olds)}")
            await deploy_log.flush()
            await self._drop_replaced(runtime, event, spec)
        return await self.emitter.forward(RetireSucceeded, event, stopped=[r.id for r in olds])

    async def _drop_replaced(self, runtime: Runtime, event: Event, live: DeploySpec) -> None:
        """Remove the artifacts of releases this one replaced, unless the live release uses them."""
        previous = []
        for entry in await self.stores.state.history(live_key(event.subject)):
            if entry.value and entry.operation not in ("DEL", "PURGE"):
                record = msgspec.json.decode(entry.value, type=LiveRelease)
                if record.deployment_id != event.deployment_id:
                    previous.append(record.spec)
        for artifact in placement.replaced_artifacts(previous, live):
            try:
                await runtime.remove_artifact(artifact)
            except Exception:  # a leftover artifact is disk space, not a failed deploy
                log.exception("artifact not removed", app=event.subject, artifact=artifact)


def _alive(runtime: Runtime, app: str, ref: InstanceRef) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(i.id == ref.id for i in await runtime.list_instances(app))

    return check
