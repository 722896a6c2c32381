"""Builder handlers: a deploy request in, `build.succeeded` or `build.failed` out, once."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from faststream.nats.annotations import NatsMessage

from dockyard import archive
from dockyard.builder import decide, queue, watchdog
from dockyard.bus import metrics
from dockyard.bus.broker import Rejected
from dockyard.bus.logs import DeployLog, heading
from dockyard.bus.service import ServiceContext
from dockyard.contract.events import (
    AnyEvent,
    BuildStarted,
    BuildSucceeded,
    CancelRequested,
    DeployQueued,
    DeployRequested,
    DeploySpec,
    DestroyData,
    DestroyRequested,
    DestroyStarted,
    DestroyStopped,
    DestroySucceeded,
    Event,
    Fact,
    KindData,
    SpecData,
)
from dockyard.contract.names import InvalidName
from dockyard.contract.phase import Phase
from dockyard.contract.state import InFlight, TimedOut
from dockyard.pipeline import destroy, rollback
from dockyard.pipeline.step import Steps
from dockyard.plan.detect import read_build_files
from dockyard.plan.merge import build_plan, read_manifest_files
from dockyard.runtime.select import Runtimes
from dockyard.state.locks import LockLost
from dockyard.state.sources import SourceMissing, object_name

if TYPE_CHECKING:
    from dockyard.builder.app import BuilderDoors

log = structlog.get_logger()

WAIT_RETRY = 1.0  # seconds between looks at the queue while another deploy runs
STEP = "build"
ENDED = "ended"  # the builder saw the deploy's end: its late events keep no record alive
TIMEOUT = "timeout"  # the watchdog's DeployFailed


class _NoAck:
    """The watchdog's steps have no message to keep in progress."""

    async def in_progress(self) -> None:
        return None


DESTROY_START = "destroy-start"
DESTROY_END = "destroy-end"
# A destroy's place in the queue: before any deploy.
DESTROY_FIRST = datetime(1970, 1, 1, tzinfo=UTC)


class Builder:
    """Takes requests in order, holds the lock, builds, publishes the outcome."""

    def __init__(self, ctx: ServiceContext, doors: BuilderDoors, runtimes: Runtimes) -> None:
        self.doors = doors
        self.runtimes = runtimes
        self.emitter = ctx.emitter
        self.nc = ctx.nc
        self.steps = Steps(doors.steps, ctx.emitter, ctx.settings.ack_wait / 3)
        settings = ctx.settings
        self.queue_limit = settings.queue_limit
        self.grace = settings.kill_grace
        self.margin = settings.phase_margin
        self.drain = settings.drain
        self.keep_releases = settings.keep_releases
        self.log_max_bytes = settings.log_max_bytes
        self.limits = archive.Limits(max_bytes=settings.archive_max_bytes,
                                     max_entries=settings.archive_max_entries,
                                     max_path=settings.archive_max_path,
                                     max_depth=settings.archive_max_depth)

    async def on_deploy(self, cmd: DeployRequested, msg: NatsMessage) -> None:
        """Queue the request in arrival order (refused when the app's queue is full); when its
        turn comes, build it (once)."""
        try:
            decide.check_request(cmd)
        except InvalidName as exc:
            raise Rejected(str(exc)) from None
        if await self.doors.steps.outcome(cmd.deployment_id, STEP) is not None:
            await self.steps.once(cmd.deployment_id, STEP, msg, self._never)  # announce again
            return
        if (reason := await self.doors.cancels.reason(cmd.deployment_id)) is not None:
            await self.steps.once(cmd.deployment_id, STEP, msg,
                                  partial(self._cancel_queued, cmd, reason))
            return
        arrived = _arrival(msg)
        before, after = await self.doors.queue.change(
            cmd.app, lambda q: queue.enqueue(q, cmd.deployment_id, arrived, self.queue_limit))
        metrics.queue_depth(cmd.app, len(after.entries))
        if queue.refused(after, cmd.deployment_id):
            await self.steps.once(cmd.deployment_id, STEP, msg, partial(
                self._reject, cmd, len(after.entries)))
            return
        if before != after:
            await self.emitter.emit(self._stamp(cmd, 0, Fact.of(DeployQueued,
                                                                 KindData(kind=cmd.kind))))
        if (queue.head(after) != cmd.deployment_id or await self._busy(cmd)
                or not await self.doors.locks.acquire(cmd.app, cmd.deployment_id)):
            await msg.nack(delay=WAIT_RETRY)
            return
        _, left = await self.doors.queue.change(
            cmd.app, lambda q: queue.remove(q, cmd.deployment_id))
        metrics.queue_depth(cmd.app, len(left.entries))
        async with self.doors.locks.hold(cmd.app, cmd.deployment_id):
            await self.steps.once(cmd.deployment_id, STEP, msg, partial(self._build, cmd))

    async def on_cancel(self, cmd: CancelRequested) -> None:
        """Mark the deployment cancelled; whoever works on it stops and reports `cancelled`."""
        try:
            decide.check_cancel(cmd)
        except InvalidName as exc:
            raise Rejected(str(exc)) from None
        await self.doors.cancels.request(cmd.deployment_id, cmd.reason)
        log.info("cancel requested", app=cmd.app, deployment_id=cmd.deployment_id)

    async def _busy(self, cmd: DeployRequested) -> bool:
        """Whether another deploy of the app is in flight (its lock may have lapsed between two
        phases: it is not free until that deploy ended)."""
        record = await self.doors.inflight.get(cmd.app)
        return record is not None and record.deployment_id != cmd.deployment_id

    async def on_event(self, event: AnyEvent) -> None:
        """Keep each deploy's in-flight record: the phase its last event made due and that
        phase's deadline; forget it when the deploy ends."""
        if isinstance(event, watchdog.ENDS):
            await self.doors.steps.put(event.deployment_id, ENDED, b"")
            await self.doors.inflight.end(event.subject, event.deployment_id)
            await self.doors.locks.release(event.subject, event.deployment_id)
            return
        if type(event) not in watchdog.PHASES:
            return
        if (await self.doors.steps.get(event.deployment_id, ENDED) is not None
                or await self.doors.inflight.timed_out(event.deployment_id) is not None):
            return  # a late event of an ended deploy
        now = datetime.now(UTC)
        await self.doors.inflight.change(event.subject, lambda current: watchdog.advance(
            current, event, now, grace=self.grace, margin=self.margin, drain=self.drain))

    async def watch(self) -> None:
        """The watchdog: every few seconds, renew the locks of the deploys in flight and end
        those past their phase's deadline."""
        while True:
            await asyncio.sleep(watchdog.EVERY)
            try:
                await self.look()
            except Exception:  # a bus hiccup: look again next period
                log.exception("watchdog look failed")

    async def look(self, now: datetime | None = None) -> None:
        """One look at every deploy in flight."""
        now = now or datetime.now(UTC)
        for record in await self.doors.inflight.all():
            try:
                await self._look_at(record, now)
            except Exception:  # one deploy's hiccup must not keep the others from their turn
                log.exception("watchdog look failed", app=record.app,
                              deployment_id=record.deployment_id)

    async def _look_at(self, record: InFlight, now: datetime) -> None:
        verdict = await self.doors.inflight.timed_out(record.deployment_id)
        if verdict is None and not watchdog.late(record, now):
            try:
                # Renewed only while held: a lock released at the deploy's end (the builder may
                # not have read that end yet) is never taken again here.
                await self.doors.locks.renew(record.app, record.deployment_id)
            except LockLost as exc:
                verdict = watchdog.timed_out(record, lost_to=exc.holder)
            else:
                if await self.doors.inflight.get(record.app) != record:
                    # It moved on meanwhile; if it ended, the renewed lock must not linger.
                    if await self.doors.steps.get(record.deployment_id, ENDED) is not None:
                        await self.doors.locks.release(record.app, record.deployment_id)
                return
        await self._time_out(record, verdict or watchdog.timed_out(record))

    async def _time_out(self, record: InFlight, verdict: TimedOut) -> None:
        """End a deploy past its deadline, once whichever builder instance gets here first:
        the verdict is recorded create-only, the DeployFailed under one step record (and one
        event id); the phases still to run see the cancel marker; the lock and queue move on."""
        verdict = await self.doors.inflight.time_out(verdict)
        await self.doors.cancels.request(record.deployment_id, verdict.reason)
        await self.steps.once(record.deployment_id, TIMEOUT, _NoAck(),
                              partial(self._timed_out, record, verdict))
        await self.doors.steps.put(record.deployment_id, ENDED, b"")
        await self.doors.inflight.end(record.app, record.deployment_id)
        await self.doors.locks.release(record.app, record.deployment_id)

    async def _timed_out(self, record: InFlight, verdict: TimedOut) -> Event[Any]:
        log.warning("deploy timed out", app=record.app, deployment_id=record.deployment_id,
                    phase=record.phase, reason=verdict.reason)
        deploy_log = DeployLog(self.nc, record.app, record.deployment_id, "builder",
                               max_bytes=self.log_max_bytes)
        await deploy_log.system(f"deploy failed: timeout: {verdict.reason}")
        await deploy_log.flush()
        return self.emitter.stamp(watchdog.failed(verdict, record), app=record.app,
                                  deployment_id=record.deployment_id, release=record.release)

    # ------------------------------------------------------------ destroy

    async def on_destroy(self, cmd: DestroyRequested, msg: NatsMessage) -> None:
        """Start destroying an app in its turn: refused while a deploy of it is queued or
        running; else the destroy takes the app's lock (no deploy starts until it ends) and
        `destroy.started` sends the scheduler to work."""
        try:
            decide.check_destroy(cmd)
        except InvalidName as exc:
            raise Rejected(str(exc)) from None
        await self.steps.once(cmd.operation_id, DESTROY_START, msg,
                              partial(self._destroy_start, cmd))

    async def _destroy_start(self, cmd: DestroyRequested) -> Event[Any]:
        waiting = await self.doors.queue.load(cmd.app)
        holder = await self.doors.locks.holder(cmd.app)
        refusal = decide.destroy_refusal(cmd.app, cmd.operation_id, waiting, holder)
        if refusal is None and not await self.doors.locks.acquire(cmd.app, cmd.operation_id):
            # A deploy took the lock between the look and the take.
            refusal = decide.destroy_refusal(cmd.app, cmd.operation_id, waiting,
                                              await self.doors.locks.holder(cmd.app))
        if refusal is not None:
            log.info("destroy refused", app=cmd.app, operation=cmd.operation_id,
                     reason=refusal.data.reason)
            return self.emitter.stamp(refusal, app=cmd.app, deployment_id=cmd.operation_id,
                                      release=0)
        # The route records name what the app's releases left; the router purges them next.
        history = await self.doors.routes.live_history(cmd.app)
        default = await self.runtimes.default_name()
        left = DestroyData(runtimes=destroy.runtimes_of(history, default))
        # At the head of the queue until its end: no deploy starts meanwhile, even if the lock's
        # lease lapsed while a service of the chain was down.
        await self.doors.queue.change(cmd.app, lambda q: queue.enqueue(q, cmd.operation_id,
                                                                       DESTROY_FIRST))
        log.info("destroying", app=cmd.app, operation=cmd.operation_id, runtimes=left.runtimes)
        return self.emitter.stamp(Fact.of(DestroyStarted, left), app=cmd.app,
                                  deployment_id=cmd.operation_id, release=0)

    async def on_destroy_stopped(self, event: DestroyStopped, msg: NatsMessage) -> None:
        """The app has no instance and no route left: forget the rest of its state, end the
        destroy, give the lock up (a deploy that waited meanwhile starts a new app, v1)."""
        await self.steps.once(event.deployment_id, DESTROY_END, msg,
                              partial(self._destroy_end, event))
        await self.doors.locks.release(event.subject, event.deployment_id)

    async def _destroy_end(self, event: DestroyStopped) -> Event[Any]:
        app = event.subject
        removed: list[str] = []
        async with self.doors.locks.hold(app, event.deployment_id):
            # Deploys requested during the destroy wait in the queue: their sources stay.
            _, waiting = await self.doors.queue.change(
                app, lambda q: queue.remove(q, event.deployment_id))
            keep = {object_name(app, e.deployment_id) for e in waiting.entries}
            if not keep:
                await self.doors.queue.forget_if_empty(app)
            if sources := await self.doors.sources.forget(app, keep):
                removed.append(f"{sources} source archive(s)")
            if manifests := await self.doors.manifests.forget(app):
                removed.append(f"{manifests} manifest(s)")
            if await self.doors.config.forget(app):
                removed.append("config (every version)")
            if hooks := (await self.doors.hooks.load(app)).hooks:
                removed.append(f"{len(hooks)} operator hook(s)")
            await self.doors.hooks.forget(app)
            if await self.doors.sinks.forget(app):
                removed.append("notification sinks")
            if await self.doors.maintenance.forget(app):
                removed.append("the maintenance flag")
            await self.doors.releases.forget(app)
            removed.append("release numbering (the next deploy is v1)")
        log.info("destroyed", app=app, operation=event.deployment_id)
        return self.emitter.after(event, Fact.of(DestroySucceeded, DestroyData(removed=removed)))

    async def _never(self) -> Event[Any]:
        raise AssertionError("only called when the outcome is recorded")

    def _stamp(self, cmd: DeployRequested, release: int, fact: Fact[Any]) -> Event[Any]:
        return self.emitter.stamp(fact, app=cmd.app, deployment_id=cmd.deployment_id,
                                  release=release)

    async def _reject(self, cmd: DeployRequested, waiting: int) -> Event[Any]:
        log.warning("deploy refused: queue full", app=cmd.app, deployment_id=cmd.deployment_id,
                    waiting=waiting, limit=self.queue_limit)
        return self._stamp(cmd, 0, decide.rejected(cmd.app, waiting, self.queue_limit))

    async def _cancel_queued(self, cmd: DeployRequested, reason: str) -> Event[Any]:
        _, left = await self.doors.queue.change(
            cmd.app, lambda q: queue.remove(q, cmd.deployment_id))
        metrics.queue_depth(cmd.app, len(left.entries))
        return self._stamp(cmd, 0, decide.cancelled_in_queue(reason))

    async def _build(self, cmd: DeployRequested) -> Event[Any]:
        release = await self.doors.releases.allocate(cmd.app, cmd.deployment_id)
        await self.emitter.emit(self._stamp(cmd, release,
                                            Fact.of(BuildStarted, KindData(kind=cmd.kind))))
        log.info("deploying", app=cmd.app, deployment_id=cmd.deployment_id, release=release,
                 kind=cmd.kind)
        deploy_log = DeployLog(self.nc, cmd.app, cmd.deployment_id, "builder",
                               max_bytes=self.log_max_bytes)
        await deploy_log.system(heading(Phase.BUILD))
        try:
            make = {"config": self._reconfigure, "rollback": self._rollback}.get(
                cmd.kind, self._build_source)
            spec = await make(cmd, release, deploy_log)
        except decide.BUILD_ERRORS as exc:
            await deploy_log.system(f"build failed: {exc}")
            fact: Fact[Any] = decide.build_failed(exc, deploy_log.take_tail())
        else:
            fact = Fact.of(BuildSucceeded, SpecData(spec=spec))
        await deploy_log.flush()
        return self._stamp(cmd, release, fact)

    async def _build_source(self, cmd: DeployRequested, release: int,
                            deploy_log: DeployLog) -> DeploySpec:
        source = decide.check_source(cmd.source_object, object_name(cmd.app, cmd.deployment_id))
        runtime_name = cmd.runtime or await self.runtimes.default_name()
        runtime = await self.runtimes.get(runtime_name)
        build_id = decide.build_id(release, cmd.deployment_id)
        with tempfile.TemporaryDirectory(prefix="dockyard-build-") as tmp:
            try:
                packed = await self.doors.sources.fetch(source, Path(tmp) / "src.tar")
            except SourceMissing as exc:
                raise archive.SourceError(str(exc)) from None
            tree = await asyncio.to_thread(archive.unpack, packed, Path(tmp) / "src", source,
                                           self.limits)
            files = {**read_manifest_files(tree), **read_build_files(tree)}
            hooks = (await self.doors.hooks.load(cmd.app)).hooks
            plan = decide.check_plan(decide.with_rollout(build_plan(files, hooks), cmd.rollout))
            for note in plan.notes:
                await deploy_log.system(f"plan: {note}")
            await self.doors.manifests.keep(cmd.app, build_id, files)
            await deploy_log.system(f"building {cmd.app} {build_id} on the {runtime_name} runtime")
            artifact = await runtime.build(cmd.app, build_id, tree, deploy_log,
                                           dockerfile=plan.build.dockerfile,
                                           command=plan.build.command,
                                           time_limit=plan.build.timeout,
                                           buildpack=plan.buildpack)
        return DeploySpec(runtime=runtime_name, build_id=build_id, artifact=artifact, plan=plan,
                          kind="source", build_artifact=artifact)

    async def _reconfigure(self, cmd: DeployRequested, release: int,
                           deploy_log: DeployLog) -> DeploySpec:
        del release
        live = await self.doors.routes.live(cmd.app)
        if live is None:
            raise decide.NoReleaseError(f"{cmd.app} has no release yet: deploy its source first")
        files = await self.doors.manifests.manifest(cmd.app, live.spec.build_id)
        plan = decide.check_plan(decide.with_rollout(
            build_plan(files, (await self.doors.hooks.load(cmd.app)).hooks), cmd.rollout))
        await deploy_log.system(
            f"config change: a release of build {live.spec.build_id} (v{live.release}) with the "
            "current config; no new build")
        return decide.config_spec(live.spec, plan)

    async def _rollback(self, cmd: DeployRequested, release: int,
                        deploy_log: DeployLog) -> DeploySpec:
        del release
        history = await self.doors.routes.live_history(cmd.app)
        to = rollback.target(cmd.app, history, cmd.to_release, self.keep_releases)
        spec = rollback.rollback_spec(to)
        await deploy_log.system(
            f"rollback: a release of v{to.release}'s build {to.spec.build_id} with its config "
            f"(version {to.spec.config_version}); no new build")
        await deploy_log.system(rollback.hooks_line(spec.plan))
        await deploy_log.system(rollback.DATABASE_WARNING)
        return spec


def _arrival(msg: NatsMessage) -> datetime:
    """When the bus stored the request: the order of the queue is the server's, not the client's."""
    stored: datetime = msg.raw_message.metadata.timestamp
    return stored
