"""The api's operations over its doors and the bus (thin: check, change state, send a command)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockyard.api import views
from dockyard.api.errors import BadRequest, Conflict, NotFound, TooLarge
from dockyard.api.feeds import Commands
from dockyard.api.models import (
    Accepted,
    ConfigChange,
    ConfigChanged,
    ConfigView,
    HookAdd,
    HookPlan,
    MaintenanceRequest,
    MaintenanceView,
    OperationAccepted,
    OperatorHooksView,
    OperatorHookView,
    RestartRequest,
    RollbackRequest,
    RolloutFiguresView,
    RolloutRequest,
    RolloutView,
    ScaleRequest,
    SinkAdd,
    SinkAdded,
    SinksView,
    SinkView,
)
from dockyard.archive import Limits, SourceError, scan
from dockyard.contract.events import (
    CancelRequested,
    DeployRequested,
    DestroyRequested,
    ReleaseFigures,
    ScaleRequested,
    new_id,
)
from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.contract.names import check_app, check_deployment_id
from dockyard.contract.plan import RolloutError, RolloutOverride
from dockyard.contract.sinks import Sink, SinkStatus, validate, with_sink, without_sink
from dockyard.contract.state import Maintenance, RolloutProgress
from dockyard.pipeline import rollback, scaling
from dockyard.pipeline.config import check_name, check_values
from dockyard.plan.durations import parse_duration, parse_memory
from dockyard.plan.merge import build_plan
from dockyard.plan.operator import added, removed, validate_hook, validate_phase
from dockyard.plan.rollout_flags import rollout_from_flags
from dockyard.state.builds import ManifestReader
from dockyard.state.config import ConfigStore, Versioned
from dockyard.state.deliveries import SinkStatusReader
from dockyard.state.formation import FormationReader
from dockyard.state.hooks import HookStore
from dockyard.state.maintenance import MaintenanceError, MaintenanceStore
from dockyard.state.rollouts import NoRollout, RolloutControl
from dockyard.state.routes import RouteReader
from dockyard.state.sinks import SinkStore
from dockyard.state.sources import SourceUploads
from dockyard.store import Store, queries

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ApiDoors:
    """The state the api changes for its HTTP operations (its records come from events)."""

    config: ConfigStore
    hooks: HookStore
    sinks: SinkStore
    sink_status: SinkStatusReader
    sources: SourceUploads
    manifests: ManifestReader
    routes: RouteReader
    maintenance: MaintenanceStore
    formation: FormationReader
    rollouts: RolloutControl


def links(app: str, deployment_id: str) -> dict[str, str]:
    """Where to follow a deployment."""
    return {"deployment": f"/deployments/{deployment_id}",
            "logs": f"/deployments/{deployment_id}/logs",
            "events": f"/apps/{app}/events/stream"}


def config_view(app: str, config: Versioned) -> ConfigView:
    """Names and version only: values never leave the bus."""
    return ConfigView(app=app, version=config.version, names=sorted(config.values))


def rollout_override(canary: str | None, hold: str | None, watch: str | None,
                     off: bool) -> RolloutOverride | None:
    """A deploy's own rollout from its query (BadRequest naming the problem)."""
    try:
        return rollout_from_flags(canary, hold, watch, off)
    except RolloutError as exc:
        raise BadRequest(f"canary, hold, watch: {exc}") from None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _figures_view(figures: ReleaseFigures | None) -> RolloutFiguresView | None:
    return None if figures is None else RolloutFiguresView(
        release=figures.release, requests=figures.requests, errors=figures.errors,
        error_rate=figures.error_rate, p95=figures.p95)


def rollout_view(app: str, progress: RolloutProgress | None) -> RolloutView:
    """An app's rollout in progress as answered."""
    if progress is None:
        return RolloutView(app=app, in_progress=False)
    return RolloutView(app=app, in_progress=True, deployment_id=progress.deployment_id,
                       release=progress.release, previous_release=progress.previous_release,
                       stage=progress.stage, step=progress.step or None,
                       steps=progress.steps or None, percent=progress.percent,
                       until=_iso(progress.until), updated=_iso(progress.updated),
                       new=_figures_view(progress.new), old=_figures_view(progress.old))


def maintenance_view(record: Maintenance) -> MaintenanceView:
    """An app's maintenance record as answered."""
    since = None if record.since is None else record.since.isoformat().replace("+00:00", "Z")
    return MaintenanceView(app=record.app, enabled=record.enabled, since=since,
                           message=record.message)


def sink_view(sink: Sink, status: SinkStatus) -> SinkView:
    """A sink without its secret or URL path."""

    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    return SinkView(name=sink.name, kind=sink.kind, host=urlsplit(sink.url).netloc,
                    events=list(sink.events), signed=sink.secret is not None,
                    max_attempts=sink.max_attempts, failures=status.failures,
                    given_up=status.given_up, last_error=status.last_error,
                    last_failure_at=iso(status.last_failure_at),
                    last_delivered_at=iso(status.last_delivered_at))


def sink_of(body: SinkAdd) -> Sink:
    """The sink as it will be stored (validated; a plain secret in its whsec_ form)."""
    fields: dict[str, Any] = {"name": body.name, "url": body.url, "kind": body.kind,
                              "secret": body.secret}
    if body.events is not None:
        fields["events"] = list(body.events)
    if body.attempts is not None:
        fields["max_attempts"] = body.attempts
    return validate(Sink(**fields))


def hook_of(body: HookAdd) -> OperatorHook:
    """The operator hook as it will be stored (BadRequest naming a bad timeout or memory)."""
    try:
        timeout = parse_duration(body.timeout) if body.timeout is not None else None
        memory = parse_memory(body.memory) if body.memory is not None else None
    except ValueError as exc:
        raise BadRequest(f"hook {body.label!r} ({body.phase}): {exc}") from None
    return validate_hook(OperatorHook(phase=body.phase, label=body.label, command=body.command,
                                      timeout=timeout, memory=memory))


def hooks_view(app: str, hooks: OperatorHooks) -> OperatorHooksView:
    """Every operator hook of an app."""
    return OperatorHooksView(app=app, hooks=[
        OperatorHookView(phase=h.phase, label=h.label, command=h.command, timeout=h.timeout,
                         memory=h.memory) for h in hooks.hooks])


async def spooled(chunks: AsyncIterator[bytes], into: Path, limit: int, setting: str) -> int:
    """Write a request body to a file, refusing it once past limit bytes; its size."""
    size = 0
    with into.open("wb") as out:  # noqa: ASYNC230 (a local temp file the chunks go into)
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(limit, setting)
            out.write(chunk)
    return size


def checked_archive(path: Path, name: str, limits: Limits) -> None:
    """A gzip tarball that the builder will unpack (BadRequest naming the problem if not)."""
    with path.open("rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            raise BadRequest("the request body must be a gzip tarball (Content-Type: "
                             "application/gzip), as `tar czf - .` makes it")
    try:
        scan(path, name, limits)
    except SourceError as exc:
        raise BadRequest(str(exc)) from None


@dataclass
class Operations:
    """What the HTTP operations do."""

    store: Store
    doors: ApiDoors
    commands: Commands
    limits: Limits
    keep_releases: int = 5

    @property
    def max_upload(self) -> int:
        """A compressed archive never holds more than its uncompressed stream, plus gzip's
        few bytes per block."""
        return self.limits.max_stream + self.limits.max_stream // 100 + 64 * 1024

    # ------------------------------------------------------------ deploys

    async def deploy(self, app: str, body: AsyncIterator[bytes],
                     rollout: RolloutOverride | None = None) -> Accepted:
        """Store an uploaded archive through the sources door and ask for its deploy (with its
        own rollout over the manifest's, if given)."""
        check_app(app)
        dep = new_id()
        with tempfile.TemporaryDirectory(prefix="dockyard-upload-") as tmp:
            path = Path(tmp) / "source.tar.gz"
            await spooled(body, path, self.max_upload, "DOCKYARD_ARCHIVE_MAX_BYTES")
            await asyncio.to_thread(checked_archive, path, f"{app}/{dep}.tar.gz", self.limits)
            data = await asyncio.to_thread(path.read_bytes)
        source = await self.doors.sources.upload(app, dep, data)
        await self.commands.send(DeployRequested(deployment_id=dep, app=app, kind="source",
                                                 source_object=source, rollout=rollout),
                                 f"{dep}:deploy")
        return Accepted(app=app, deployment_id=dep, links=links(app, dep))

    async def cancel(self, deployment_id: str, reason: str) -> Accepted:
        """Ask to cancel a deployment that has not ended (Conflict if it has)."""
        check_deployment_id(deployment_id)
        found = await asyncio.to_thread(views.deployment_row, self.store, deployment_id)
        if found.finished_at is not None:
            raise Conflict(f"deployment {deployment_id} already ended ({found.status}); "
                           "nothing to cancel")
        await self.commands.send(CancelRequested(deployment_id=deployment_id, app=found.app,
                                                 reason=reason), f"{deployment_id}:cancel")
        return Accepted(app=found.app, deployment_id=deployment_id,
                        links=links(found.app, deployment_id))

    async def rollback(self, app: str, body: RollbackRequest) -> OperationAccepted:
        """Ask for a new release of an earlier release's build and config (NotFound for a
        release that never went live, Conflict for one no longer kept)."""
        check_app(app)
        history = await self.doors.routes.live_history(app)
        try:
            target = rollback.target(app, history, body.release, self.keep_releases)
        except rollback.ReleaseNotKept as exc:
            raise Conflict(str(exc)) from None
        except rollback.RollbackError as exc:
            raise NotFound(str(exc)) from None
        dep = new_id()
        await self.commands.send(DeployRequested(
            deployment_id=dep, app=app, kind="rollback", to_release=target.release,
            reason=f"rollback to v{target.release}"), f"{dep}:deploy")
        return OperationAccepted(app=app, operation="rollback", deployment_id=dep,
                                 warning=rollback.DATABASE_WARNING, links=links(app, dep))

    # ------------------------------------------------------------ scale and restart

    async def scale(self, app: str, body: ScaleRequest) -> OperationAccepted:
        """Ask the scheduler to run `count` instances of one process type of the live release
        (NotFound without a live release; BadRequest for an unknown type or a count out of
        0..20)."""
        return await self._operate(app, "scale", {body.process: body.count}, None)

    async def restart(self, app: str, body: RestartRequest) -> OperationAccepted:
        """Ask the scheduler to replace the live release's instances, one type or all."""
        return await self._operate(app, "restart", {}, body.process)

    async def formation(self, app: str) -> dict[str, int] | None:
        """The app's formation, once it was scaled."""
        found = await self.doors.formation.get(check_app(app))
        return None if found is None else dict(found.counts)

    async def _operate(self, app: str, kind: str, counts: dict[str, int],
                       process: str | None) -> OperationAccepted:
        check_app(app)
        live = await self.doors.routes.live(app)
        if live is None:
            raise NotFound(f"{app} has no live release to {kind}")
        try:
            scaling.check_request(live.spec.plan, kind, counts, process)
        except scaling.ScaleRefused as exc:
            raise BadRequest(str(exc)) from None
        op = new_id()
        await self.commands.send(ScaleRequested(
            deployment_id=op, app=app, kind=kind,  # type: ignore[arg-type]
            counts=counts, process=process), f"{op}:scale")
        return OperationAccepted(app=app, operation=kind, deployment_id=op,
                                 links={"logs": f"/deployments/{op}/logs",
                                        "events": f"/apps/{app}/events/stream"})

    # ------------------------------------------------------------ destroy

    async def destroy(self, app: str) -> OperationAccepted:
        """Ask to destroy an app (NotFound for an unknown one; Conflict while a deploy of it is
        queued or running: the builder would refuse it)."""
        check_app(app)
        if not await self._known(app):
            raise NotFound(f"no app named {app!r}: it has no deployments, config, hooks or "
                           "sinks")
        if busy := await asyncio.to_thread(queries.unfinished_deployments, self.store, app):
            raise Conflict(f"a deploy of {app} is queued or running ({', '.join(busy)}): wait "
                           "for it to end or cancel it, then destroy again")
        op = new_id()
        await self.commands.send(DestroyRequested(operation_id=op, app=app), f"{op}:destroy")
        return OperationAccepted(app=app, operation="destroy", deployment_id=op,
                                 links={"events": f"/apps/{app}/events/stream"})

    async def _known(self, app: str) -> bool:
        if await asyncio.to_thread(queries.has_app, self.store, app):
            return True
        if await self.doors.routes.live(app) is not None:
            return True
        if (await self.doors.config.current(app)).version > 0:
            return True
        if (await self.doors.hooks.load(app)).hooks:
            return True
        return bool((await self.doors.sinks.load(app)).sinks)

    # ------------------------------------------------------------ config

    async def config(self, app: str) -> ConfigView:
        """The config's version and names."""
        return config_view(app, await self.doors.config.current(check_app(app)))

    async def change_config(self, app: str, change: ConfigChange) -> ConfigChanged:
        """Change config vars; with a live release, release it again with the new config."""
        check_app(app)
        for key in change.unset:
            check_name(key)
        check_values(change.set)
        if not change.set and not change.unset:
            raise BadRequest("nothing to change: give `set` and/or `unset`")
        after = await self.doors.config.change(app, dict(change.set), list(change.unset))
        dep: str | None = None
        if await self.doors.routes.live(app) is not None:
            dep = new_id()
            await self.commands.send(DeployRequested(deployment_id=dep, app=app, kind="config",
                                                     reason=f"config version {after.version}"),
                                     f"{dep}:deploy")
        view = config_view(app, after)
        return ConfigChanged(app=app, version=view.version, names=view.names, deployment_id=dep,
                             links=links(app, dep) if dep else {})

    # ------------------------------------------------------------ hooks

    async def plan(self, app: str) -> HookPlan:
        """The merged plan the next deploy of the live build would run."""
        check_app(app)
        live = await self.doors.routes.live(app)
        files = await self.doors.manifests.manifest(app, live.spec.build_id) if live else {}
        hooks = (await self.doors.hooks.load(app)).hooks
        return HookPlan(app=app, live_release=live.release if live else None,
                        plan=build_plan(files, hooks))

    async def add_hook(self, app: str, body: HookAdd) -> OperatorHooksView:
        """Add an operator hook."""
        check_app(app)
        hook = hook_of(body)
        return hooks_view(app, await self.doors.hooks.change(app, lambda h: added(h, hook)))

    async def remove_hook(self, app: str, phase: str, label: str) -> OperatorHooksView:
        """Remove an operator hook by phase and label."""
        check_app(app)
        validate_phase(phase, label)
        return hooks_view(app, await self.doors.hooks.change(
            app, lambda h: removed(h, app, phase, label)))

    # ------------------------------------------------------------ sinks

    async def sinks(self, app: str) -> SinksView:
        """The app's sinks with how each answered lately."""
        check_app(app)
        sinks = (await self.doors.sinks.load(app)).sinks
        found = await self.doors.sink_status.statuses(app, [s.name for s in sinks])
        return SinksView(app=app, sinks=[sink_view(s, found[s.name]) for s in sinks])

    async def add_sink(self, app: str, body: SinkAdd) -> SinkAdded:
        """Add (or replace by name) a sink; a secret is answered once, in whsec_ form."""
        check_app(app)
        sink = sink_of(body)
        await self.doors.sinks.change(app, lambda current: with_sink(current, sink))
        status = (await self.doors.sink_status.statuses(app, [sink.name]))[sink.name]
        # The whsec_ form of a plain secret is shown this once; a given whsec_ one is not echoed.
        shown = sink.secret if sink.secret != body.secret else None
        return SinkAdded(app=app, sink=sink_view(sink, status), secret=shown)

    async def remove_sink(self, app: str, name: str) -> SinksView:
        """Stop delivering to a sink."""
        check_app(app)
        await self.doors.sinks.change(app, lambda current: without_sink(current, app, name))
        return await self.sinks(app)


    # ------------------------------------------------------------ rollouts

    async def rollout(self, app: str) -> RolloutView:
        """The app's rollout in progress (a canary step or the watch window), if any."""
        check_app(app)
        await self.known_app(app)
        return rollout_view(app, await self.doors.rollouts.progress(app))

    async def order_rollout(self, app: str, body: RolloutRequest) -> RolloutView:
        """Order the app's rollout in progress to promote or abort (409: none in progress);
        the router acts within a second."""
        check_app(app)
        await self.known_app(app)
        try:
            progress = await self.doors.rollouts.give(app, body.action)
        except NoRollout as exc:
            raise Conflict(str(exc)) from None
        return rollout_view(app, progress)

    # ------------------------------------------------------------ maintenance

    async def known_app(self, app: str) -> None:
        """NotFound (404) unless the store knows the app (it has had a deployment)."""
        await asyncio.to_thread(views.app, self.store, app)

    async def maintenance(self, app: str) -> MaintenanceView:
        """Whether the app's host answers its maintenance page."""
        check_app(app)
        await self.known_app(app)
        return maintenance_view(await self.doors.maintenance.get(app))

    async def turn_maintenance(self, app: str, body: MaintenanceRequest) -> MaintenanceView:
        """Turn maintenance on or off; the router follows the record within moments."""
        check_app(app)
        await self.known_app(app)
        try:
            record = await self.doors.maintenance.turn(app, body.enabled, body.message)
        except MaintenanceError as exc:
            raise BadRequest(str(exc)) from None
        return maintenance_view(record)
