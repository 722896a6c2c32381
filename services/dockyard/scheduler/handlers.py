"""Scheduler handlers: start new instances, remove them on failure,
retire the old after a switch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from faststream.nats.annotations import NatsMessage

from dockyard.bus.broker import Rejected
from dockyard.bus.logs import DeployLog, heading
from dockyard.bus.service import ServiceContext
from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildFailed,
    DeployFailed,
    DeploySpec,
    DestroyData,
    DestroyStopped,
    DestroyUnrouted,
    Event,
    Fact,
    HookFailed,
    InstanceRef,
    ReleaseFailed,
    ReleaseSucceeded,
    RolloutRolledBack,
    RolloutWatched,
    ScaleData,
    ScaleFailed,
    ScaleFailureData,
    ScalePlaced,
    ScaleRequested,
    ScaleSucceeded,
    SpecData,
    StartFailed,
    StartStarted,
    TrafficFailed,
    TrafficScaled,
)
from dockyard.contract.names import InvalidName, check_app, check_deployment_id
from dockyard.contract.phase import Phase
from dockyard.contract.plan import watches
from dockyard.pipeline import scaling
from dockyard.pipeline.env import instance_env
from dockyard.pipeline.rollback import pruned_artifacts
from dockyard.pipeline.step import Steps
from dockyard.runtime.base import InstanceSpec, Runtime
from dockyard.runtime.health import wait_healthy
from dockyard.runtime.select import Runtimes
from dockyard.scheduler import decide, placement
from dockyard.state.formation import Formation
from dockyard.state.placements import Placement

if TYPE_CHECKING:
    from dockyard.scheduler.app import SchedulerDoors

# A rolled-back release is one before its switch as far as its instances go: the old release
# serves again, the new one's instances are removed and on-failure runs.
PreSwitchFailure = (BuildFailed | ReleaseFailed | StartFailed | HookFailed | TrafficFailed
                    | RolloutRolledBack)

log = structlog.get_logger()

# Seconds between looks at the app's lock while a deploy (or another scale) holds it.
SCALE_WAIT_RETRY = 1.0
PLACE_STEP = "scale-placed"
END_STEP = "scale-end"


class Scheduler:
    """Owns instances: start, health, removal, retirement."""

    def __init__(self, ctx: ServiceContext, doors: SchedulerDoors, runtimes: Runtimes) -> None:
        self.doors = doors
        self.runtimes = runtimes
        self.emitter = ctx.emitter
        self.nc = ctx.nc
        self.settings = ctx.settings
        self.steps = Steps(doors.steps, ctx.emitter, ctx.settings.ack_wait / 3)

    async def on_release_succeeded(self, event: ReleaseSucceeded, msg: NatsMessage) -> None:
        """Start every process type at its scale; wait for `web` to be healthy; not routed yet."""
        await self.steps.once(event.deployment_id, "start-phase", msg, partial(self._start, event))

    async def on_pre_switch_failure(self, event: PreSwitchFailure, msg: NatsMessage) -> None:
        """A deploy failed before its switch: remove its new instances; on-failure comes next."""
        await self.steps.once(event.deployment_id, "abort", msg, partial(self._abort, event))

    async def on_deploy_failed(self, event: DeployFailed, msg: NatsMessage) -> None:
        """A deploy the watchdog ended (`timeout`), maybe while we were down: if its release was
        never switched in, remove its instances; if it was, it serves: retire the old ones."""
        spec = event.data.spec
        if event.data.status != "timeout" or spec is None:
            return
        live = await self.doors.routes.live(event.subject)
        if live is not None and live.release == event.release:
            await self.steps.once(event.deployment_id, "retire", msg,
                                  partial(self._retire, event, spec))
            return
        runtime = await self.runtimes.get(spec.runtime)
        removed = await self._remove(runtime, event.subject, event.release)
        if removed:
            log.info("timed-out deploy's instances removed", app=event.subject,
                     deployment_id=event.deployment_id, removed=removed)
            deploy_log = self._log(event)
            await deploy_log.system(f"deploy timed out: removed new instances: "
                                    f"{', '.join(removed)}")
            await deploy_log.flush()

    async def on_after_switch_succeeded(self, event: AfterSwitchSucceeded,
                                        msg: NatsMessage) -> None:
        """The deploy succeeded: the lock goes to the next deploy, then the old instances drain
        (with a watch window, once the router says it passed: rollout.watched)."""
        if watches(event.data.spec.plan, event.data.spec.kind):
            return  # the old release stays warm: the router watches the new one
        await self._succeeded(event, event.data.spec, msg)

    async def on_rollout_watched(self, event: RolloutWatched, msg: NatsMessage) -> None:
        """The watch window passed clean: the deploy succeeded, the old instances drain."""
        await self._succeeded(event, event.data.spec, msg)

    async def _succeeded(self, event: Event[Any], spec: DeploySpec, msg: NatsMessage) -> None:
        if await self.doors.timeouts.timed_out(event.deployment_id) is not None:
            return  # the watchdog ended it already (and the old instances are retired then)
        await self.steps.once(event.deployment_id, "end", msg,
                              partial(self._stamped, event, decide.succeeded()))
        log.info("deployed", app=event.subject, deployment_id=event.deployment_id,
                 release=event.release, status="succeeded")
        await self.doors.locks.release(event.subject, event.deployment_id)
        await self.steps.once(event.deployment_id, "retire", msg,
                              partial(self._retire, event, spec))

    async def on_after_switch_failed(self, event: AfterSwitchFailed, msg: NatsMessage) -> None:
        """Traffic stays on the new release: retire the old, then the deploy ends failed."""
        if event.data.spec is not None:
            await self.steps.once(event.deployment_id, "retire", msg,
                                  partial(self._retire, event, event.data.spec))
        await self.steps.once(event.deployment_id, "abort", msg,
                              partial(self._stamped, event, decide.aborted(event.data)))

    async def _stamped(self, event: Event[Any], fact: Fact[Any]) -> Event[Any]:
        return self.emitter.after(event, fact)

    async def _start(self, event: ReleaseSucceeded) -> Event[Any]:
        spec = event.data.spec
        if (reason := await self.doors.cancels.reason(event.deployment_id)) is not None:
            return self.emitter.after(event, decide.cancelled(reason, spec))
        await self.emitter.emit(self.emitter.after(event, Fact.of(StartStarted,
                                                                  SpecData(spec=spec))))
        deploy_log = self._log(event)
        await deploy_log.system(heading(Phase.START))
        runtime = await self.runtimes.get(spec.runtime)
        async with self.doors.locks.hold(event.subject, event.deployment_id):
            # A crashed earlier attempt may have left instances: the runtime re-attaches to
            # them by deployment, process and index instead of starting them again.
            try:
                instances = await self._start_all(runtime, event, spec, deploy_log)
            except Exception as exc:
                await self._remove(runtime, event.subject, event.release)
                await deploy_log.system(f"start failed: {exc}; new instances removed")
                fact: Fact[Any] = decide.start_failed(spec, deploy_log.scrub(exc),
                                                      deploy_log.take_tail())
            else:
                # Recorded before start.succeeded is published: the router routes only to these.
                await self.doors.placements.record(Placement(
                    app=event.subject, release=event.release, deployment_id=event.deployment_id,
                    instances=instances))
                fact = decide.started(spec, instances)
        await deploy_log.flush()
        return self.emitter.after(event, fact)

    async def _start_all(self, runtime: Runtime, event: ReleaseSucceeded, spec: DeploySpec,
                         deploy_log: DeployLog) -> list[InstanceRef]:
        values = await self.doors.config.at_version(event.subject, spec.config_version)
        deploy_log.secrets = values  # an instance that dies at once shows its output
        recorded = await self.doors.formation.get(event.subject)
        counts = scaling.formation_of(spec.plan, None if recorded is None else recorded.counts)
        plan = msgspec.structs.replace(spec.plan, processes=[
            msgspec.structs.replace(p, scale=counts[p.name]) for p in spec.plan.processes])
        if recorded is not None:
            await deploy_log.system("formation: " + ", ".join(f"{k}={v}"
                                                              for k, v in counts.items()))
        env_for = {
            f"{p.name}-{i}": instance_env(values, app=event.subject, process=p.name, index=i,
                                          artifact=spec.artifact, release=event.release,
                                          deployment_id=event.deployment_id)
            for p in plan.processes for i in range(1, p.scale + 1)
        }
        wanted = placement.wanted(plan, app=event.subject, deployment_id=event.deployment_id,
                                  release=event.release, artifact=spec.artifact, env_for=env_for)
        if not any(s.process == placement.WEB for s in wanted):
            await deploy_log.system("no web process: nothing will be routed")
        started: list[InstanceRef] = []
        for want in wanted:
            ref = await runtime.start_instance(want)
            started.append(ref)
            await deploy_log.system(f"started {want.process}.{want.index} ({ref.id})"
                                    + (f" on port {ref.port}" if ref.port else ""))
        health = spec.plan.health
        for ref in started:
            if ref.process != placement.WEB or ref.port is None:
                continue
            what = f"HTTP GET {health.path} answering 2xx" if health.path else "TCP connect"
            await deploy_log.system(f"waiting for {ref.id}: {what} within {health.timeout:g}s")
            await wait_healthy(ref.host, ref.port, health, _alive(runtime, event.subject, ref),
                               settle=runtime.tcp_settle)
            await deploy_log.system(f"{ref.id} is healthy")
        return started

    async def _remove(self, runtime: Runtime, app: str, release: int) -> list[str]:
        removed: list[str] = []
        for ref in placement.of_release(await runtime.list_instances(app), release):
            await runtime.stop_instance(ref, self.settings.kill_grace)
            removed.append(ref.id)
        return removed

    async def _abort(self, event: PreSwitchFailure) -> Event[Any]:
        spec = event.data.spec
        if spec is not None:
            runtime = await self.runtimes.get(spec.runtime)
            removed = await self._remove(runtime, event.subject, event.release)
            if removed:
                deploy_log = self._log(event)
                await deploy_log.system(f"removed new instances: {', '.join(removed)}")
                await deploy_log.flush()
            # Its artifacts stay until on-failure ran from them (the hook-runner removes them).
        return self.emitter.after(event, decide.aborted(event.data))

    async def _retire(self, event: Event[Any], spec: DeploySpec) -> Event[Any]:
        """Drain and stop instances of the releases before this one; drop their artifacts."""
        runtime = await self.runtimes.get(spec.runtime)
        olds = placement.older(await runtime.list_instances(event.subject), event.release)
        if olds:
            deploy_log = self._log(event)
            drain = placement.drain_time(spec.plan.drain, self.settings.drain)
            await deploy_log.system(heading(Phase.RETIRE))
            await deploy_log.system(f"draining {len(olds)} old instance(s) for {drain:g}s")
            await asyncio.sleep(drain)
            for ref in olds:
                await runtime.stop_instance(ref, self.settings.kill_grace)
            await deploy_log.system(f"stopped {', '.join(r.id for r in olds)}")
            await deploy_log.flush()
        await self._drop_replaced(runtime, event, spec)
        return self.emitter.after(event, decide.retired(olds))

    async def _drop_replaced(self, runtime: Runtime, event: Event[Any], live: DeploySpec) -> None:
        """Remove the artifacts of releases older than the kept ones (DOCKYARD_KEEP_RELEASES,
        for rollback), unless a kept or the live release uses them."""
        history = await self.doors.routes.live_history(event.subject)
        # A later deploy may already be live (the drain is off the lock), maybe on an old build.
        current = await self.doors.routes.live(event.subject)
        keep = [live] + ([current.spec] if current is not None else [])
        for artifact in pruned_artifacts(history, self.settings.keep_releases, keep):
            try:
                await runtime.remove_artifact(artifact)
            except Exception:  # a leftover artifact is disk space, not a failed deploy
                log.exception("artifact not removed", app=event.subject, artifact=artifact)

    # ------------------------------------------------------------ scale and restart

    async def on_scale(self, cmd: ScaleRequested, msg: NatsMessage) -> None:
        """In the app's turn (its lock, queued behind deploys), start what the operation adds to
        the live release (healthy), record the placement and the formation, then let the
        router route to it (scale.placed)."""
        try:
            check_app(cmd.app)
            check_deployment_id(cmd.deployment_id)
        except InvalidName as exc:
            raise Rejected(str(exc)) from None
        if await self.doors.steps.outcome(cmd.deployment_id, PLACE_STEP) is not None:
            await self.steps.once(cmd.deployment_id, PLACE_STEP, msg, self._never)
            return
        if not await self.doors.locks.acquire(cmd.app, cmd.deployment_id):
            await msg.nack(delay=SCALE_WAIT_RETRY)
            return
        async with self.doors.locks.hold(cmd.app, cmd.deployment_id):
            outcome = await self.steps.once(cmd.deployment_id, PLACE_STEP, msg,
                                            partial(self._place, cmd))
        if isinstance(outcome, ScaleFailed):
            await self.doors.locks.release(cmd.app, cmd.deployment_id)

    async def _never(self) -> Event[Any]:
        raise AssertionError("only called when the outcome is recorded")

    async def _place(self, cmd: ScaleRequested) -> Event[Any]:
        live = await self.doors.routes.live(cmd.app)

        def failed(reason: str, release: int = 0) -> Event[Any]:
            return self.emitter.stamp(Fact.of(ScaleFailed, ScaleFailureData(kind=cmd.kind,
                                                                           reason=reason)),
                                      app=cmd.app, deployment_id=cmd.deployment_id,
                                      release=release)

        if live is None:
            return failed(f"{cmd.app} has no live release to {cmd.kind}")
        spec, release = live.spec, live.release
        runtime = await self.runtimes.get(spec.runtime)
        running = placement.of_release(await runtime.list_instances(cmd.app), release)
        recorded = await self.doors.formation.get(cmd.app)
        try:
            change = scaling.change(cmd, spec.plan, running,
                                    None if recorded is None else recorded.counts)
        except scaling.ScaleRefused as exc:
            return failed(str(exc), release)
        op_log = DeployLog(self.nc, cmd.app, cmd.deployment_id, "scheduler")
        values = await self.doors.config.at_version(cmd.app, spec.config_version)
        op_log.secrets = values
        await op_log.system(f"===== {cmd.kind} v{release} =====")
        started: list[InstanceRef] = []
        try:
            for want in change.start:
                env = instance_env(values, app=cmd.app, process=want.process, index=want.index,
                                   artifact=spec.artifact, release=release,
                                   deployment_id=cmd.deployment_id)
                ref = await runtime.start_instance(InstanceSpec(
                    app=cmd.app, deployment_id=cmd.deployment_id, release=release,
                    process=want.process, index=want.index, artifact=spec.artifact,
                    command=_command(spec, want.process), env=env))
                started.append(ref)
                await op_log.system(f"started {ref.process}.{want.index} ({ref.id})"
                                    + (f" on port {ref.port}" if ref.port else ""))
            for ref in started:
                if ref.process == placement.WEB and ref.port is not None:
                    await wait_healthy(ref.host, ref.port, spec.plan.health,
                                       _alive(runtime, cmd.app, ref),
                                       settle=runtime.tcp_settle)
                    await op_log.system(f"{ref.id} is healthy")
        except Exception as exc:
            for ref in started:
                await runtime.stop_instance(ref, self.settings.kill_grace)
            await op_log.system(f"{cmd.kind} failed: {exc}; new instances removed")
            await op_log.flush()
            return failed(str(op_log.scrub(exc)), release)
        instances = scaling.kept(running, change.stop) + started
        # Recorded before scale.placed is published: the router routes only to these.
        await self.doors.placements.record(Placement(
            app=cmd.app, release=release, deployment_id=live.deployment_id,
            instances=instances, operation_id=cmd.deployment_id))
        if cmd.kind == "scale":
            await self.doors.formation.record(Formation(app=cmd.app, counts=change.formation,
                                                        operation_id=cmd.deployment_id))
        await op_log.flush()
        return self.emitter.stamp(
            Fact.of(ScalePlaced, ScaleData(kind=cmd.kind, spec=spec, instances=instances,
                                           formation=change.formation,
                                           started=[r.id for r in started])),
            app=cmd.app, deployment_id=cmd.deployment_id, release=release)

    async def on_traffic_scaled(self, event: TrafficScaled, msg: NatsMessage) -> None:
        """The router routes exactly the placed web instances: drain and stop the ones no
        longer wanted, end the operation and give the app's turn up."""
        await self.steps.once(event.deployment_id, END_STEP, msg, partial(self._end, event))
        await self.doors.locks.release(event.subject, event.deployment_id)

    async def _end(self, event: TrafficScaled) -> Event[Any]:
        spec = event.data.spec
        runtime = await self.runtimes.get(spec.runtime)
        wanted = {i.id for i in event.data.instances}
        extras = [i for i in placement.of_release(await runtime.list_instances(event.subject),
                                                  event.release) if i.id not in wanted]
        op_log = self._log(event)
        if extras:
            if any(i.process == placement.WEB for i in extras):
                drain = placement.drain_time(spec.plan.drain, self.settings.drain)
                await op_log.system(f"draining {len(extras)} instance(s) for {drain:g}s")
                await asyncio.sleep(drain)
            for ref in extras:
                await runtime.stop_instance(ref, self.settings.kill_grace)
            await op_log.system(f"stopped {', '.join(r.id for r in extras)}")
        await op_log.system(f"{event.data.kind} of v{event.release} done: "
                            + ", ".join(f"{k}={v}" for k, v in event.data.formation.items()))
        await op_log.flush()
        return self.emitter.after(event, Fact.of(ScaleSucceeded, msgspec.structs.replace(
            event.data, stopped=[r.id for r in extras])))

    # ------------------------------------------------------------ destroy

    async def on_destroy_unrouted(self, event: DestroyUnrouted, msg: NatsMessage) -> None:
        """An app is destroyed and no longer routed: stop every instance, remove its artifacts,
        files and user and forget its placements (once; the builder forgets the rest next)."""
        await self.steps.once(event.deployment_id, "destroy", msg, partial(self._destroy, event))

    async def _destroy(self, event: DestroyUnrouted) -> Event[Any]:
        app = event.subject
        names = event.data.runtimes or [await self.runtimes.default_name()]
        removed: list[str] = []
        async with self.doors.locks.hold(app, event.deployment_id):
            for name in names:
                runtime = await self.runtimes.get(name)
                for ref in await runtime.list_instances(app):
                    await runtime.stop_instance(ref, self.settings.kill_grace)
                    removed.append(f"instance {ref.id} ({ref.process}, v{ref.release})")
                # What the runtime knows is the app's (labels, its tree), never what an event
                # names: images, release dirs, containers, network, user.
                removed += await runtime.remove_app(app)
            releases = await self.doors.placements.forget(app)
            if await self.doors.formation.forget(app):
                removed.append("the formation")
        if releases:
            removed.append("placements of " + ", ".join(f"v{n}" for n in releases))
        log.info("destroyed instances and artifacts", app=app, operation=event.deployment_id,
                 runtimes=names)
        return self.emitter.after(event, Fact.of(DestroyStopped, DestroyData(removed=removed)))

    def _log(self, event: Event[Any]) -> DeployLog:
        return DeployLog(self.nc, event.subject, event.deployment_id, "scheduler")


def _command(spec: DeploySpec, process: str) -> str:
    return next(p.command for p in spec.plan.processes if p.name == process)


def _alive(runtime: Runtime, app: str, ref: InstanceRef) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(i.id == ref.id for i in await runtime.list_instances(app))

    return check
