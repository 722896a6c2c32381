"""Builder handlers: a deploy request in, `build.succeeded` or `build.failed` out."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import msgspec
import structlog
from faststream.nats.annotations import NatsMessage

from dockyard.builder import queue, releases, source
from dockyard.bus.broker import Rejected, publish
from dockyard.bus.logs import DeployLog, heading
from dockyard.bus.service import ServiceContext
from dockyard.pipeline import cancel, config, lock, runs
from dockyard.pipeline.live import live_release
from dockyard.pipeline.emit import Emitter
from dockyard.pipeline.progress import working
from dockyard.plan.errors import PlanError
from dockyard.plan.merge import build_plan, read_manifest_files
from dockyard.plan.operator import list_hooks
from dockyard.runtime.base import BuildError
from dockyard.runtime.select import Runtimes
from dockyard.schemas.events import (
    BuildFailed,
    BuildStarted,
    BuildSucceeded,
    CancelRequested,
    DeployFailed,
    DeployQueued,
    DeployRequested,
    DeploySpec,
)
from dockyard.schemas.state import LiveRelease

log = structlog.get_logger()

APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
WAIT_RETRY = 1.0  # seconds between looks at the queue while another deploy runs


def manifest_object(app: str, build_id: str) -> str:
    """Where a build's manifest files are kept (to rebuild its plan on a config change)."""
    return f"{app}/{build_id}/manifest.json"


class Builder:
    """Takes requests in order, holds the lock, builds, publishes the outcome."""

    def __init__(self, ctx: ServiceContext, runtimes: Runtimes) -> None:
        self.ctx = ctx
        self.stores = ctx.stores
        self.runtimes = runtimes
        self.emitter = Emitter(ctx.broker, "builder")

    async def on_deploy(self, cmd: DeployRequested, msg: NatsMessage) -> None:
        """Queue the request; when its turn comes, build it."""
        if not APP_NAME.match(cmd.app):
            raise Rejected(f"invalid app name {cmd.app!r}: lowercase letters, digits, hyphens")
        previous = await runs.replay(self.stores.runs, cmd.deployment_id, "build")
        if previous is not None:  # a redelivery: announce the recorded outcome again (deduped)
            await publish(self.ctx.broker, previous)
            return
        reason = await cancel.reason(self.stores.cancel, cmd.deployment_id)
        if reason is not None:
            await self._cancel_queued(cmd, reason)
            return
        before, after = await queue.change(
            self.stores.state, cmd.app,
            lambda q: queue.enqueue(q, cmd.deployment_id, cmd.requested_at))
        if before != after:
            await self.emitter.emit(DeployQueued, app=cmd.app, deployment_id=cmd.deployment_id,
                                    release=0, kind=cmd.kind)
        if queue.head(after) != cmd.deployment_id or not await lock.acquire(
                self.stores.locks, cmd.app, cmd.deployment_id):
            await msg.nack(delay=WAIT_RETRY)
            return
        await queue.change(self.stores.state, cmd.app,
                           lambda q: queue.remove(q, cmd.deployment_id))
        async with (working(msg, self.ctx.settings.ack_wait / 3),
                    lock.hold(self.stores.locks, cmd.app, cmd.deployment_id)):
            await self._build(cmd)

    async def on_cancel(self, cmd: CancelRequested) -> None:
        """Mark the deployment cancelled; whoever works on it stops and reports `cancelled`."""
        await cancel.request(self.stores.cancel, cmd.deployment_id, cmd.reason)
        log.info("cancel requested", app=cmd.app, deployment_id=cmd.deployment_id)

    async def _cancel_queued(self, cmd: DeployRequested, reason: str) -> None:
        await queue.change(self.stores.state, cmd.app, lambda q: queue.remove(q, cmd.deployment_id))
        event = await self.emitter.emit(DeployFailed, app=cmd.app,
                                        deployment_id=cmd.deployment_id, release=0,
                                        status="cancelled", reason=reason)
        await runs.finish(self.stores.runs, cmd.deployment_id, "build", event)

    async def _build(self, cmd: DeployRequested) -> None:
        release = await releases.allocate(self.stores.state, self.stores.runs, cmd.app,
                                          cmd.deployment_id)
        deploy_log = DeployLog(self.stores.nc, cmd.app, cmd.deployment_id, "builder")
        base = dict(app=cmd.app, deployment_id=cmd.deployment_id, release=release)
        await self.emitter.emit(BuildStarted, kind=cmd.kind, **base)
        log.info("deploying", app=cmd.app, deployment_id=cmd.deployment_id, release=release,
                 kind=cmd.kind)
        await deploy_log.system(heading("build"))
        try:
            if cmd.kind == "config":
                spec = await self._reconfigure(cmd, deploy_log)
            else:
                spec = await self._build_source(cmd, release, deploy_log)
        except (PlanError, BuildError, source.SourceError, NoReleaseError) as exc:
            await deploy_log.system(f"build failed: {exc}")
            event = await self.emitter.emit(
                BuildFailed, status="build-error", reason=str(exc),
                exit_code=getattr(exc, "exit_code", None), tail=deploy_log.take_tail(), **base)
        else:
            event = await self.emitter.emit(BuildSucceeded, spec=spec, **base)
        await deploy_log.flush()
        await runs.finish(self.stores.runs, cmd.deployment_id, "build", event)

    async def _build_source(self, cmd: DeployRequested, release: int,
                            deploy_log: DeployLog) -> DeploySpec:
        if not cmd.source_object:
            raise source.SourceError("deploy request names no source archive")
        runtime_name = cmd.runtime or await self.runtimes.default_name()
        runtime = await self.runtimes.get(runtime_name)
        build_id = f"v{release}-{cmd.deployment_id[:8]}"
        with tempfile.TemporaryDirectory(prefix="dockyard-build-") as tmp:
            tree = await source.fetch(self.stores.sources, cmd.source_object, Path(tmp) / "src")
            files = read_manifest_files(tree)
            plan = build_plan(files, (await list_hooks(self.stores.hooks, cmd.app)).hooks)
            for note in plan.notes:
                await deploy_log.system(f"plan: {note}")
            await self.stores.builds.put(manifest_object(cmd.app, build_id),
                                         msgspec.json.encode(files))
            await deploy_log.system(f"building {cmd.app} {build_id} on the {runtime_name} runtime")
            artifact = await runtime.build(cmd.app, build_id, tree, deploy_log,
                                           dockerfile=plan.build.dockerfile,
                                           command=plan.build.command, timeout=plan.build.timeout)
        version, _ = await config.current(self.stores.config, cmd.app)
        return DeploySpec(runtime=runtime_name, build_id=build_id, artifact=artifact, plan=plan,
                          config_version=version, kind="source", build_artifact=artifact)

    async def _reconfigure(self, cmd: DeployRequested, deploy_log: DeployLog) -> DeploySpec:
        live = await live_release(self.stores.state, cmd.app)
        if live is None:
            raise NoReleaseError(f"{cmd.app} has no release yet: deploy its source first")
        stored = await self.stores.builds.get(manifest_object(cmd.app, live.spec.build_id))
        files = msgspec.json.decode(stored.data or b"{}", type=dict[str, str])
        plan = build_plan(files, (await list_hooks(self.stores.hooks, cmd.app)).hooks)
        version, _ = await config.current(self.stores.config, cmd.app)
        await deploy_log.system(
            f"config change: release of build {live.spec.build_id} (v{live.release}) with "
            f"config version {version}; no new build")
        return DeploySpec(runtime=live.spec.runtime, build_id=live.spec.build_id,
                          artifact=_base_artifact(live), plan=plan, config_version=version,
                          kind="config", build_artifact=_base_artifact(live))


class NoReleaseError(Exception):
    """A config change for an app that has never been released."""


def _base_artifact(live: LiveRelease) -> str:
    # A config release reruns predeploy, so it starts from the image as built, not from the
    # live one that already carries the live release's predeploy changes.
    return live.spec.build_artifact or live.spec.artifact
