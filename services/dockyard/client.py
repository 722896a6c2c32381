"""What the CLI (and anyone in Python) does on the bus: upload, request, follow, read."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, ConsumerInfo, DeliverPolicy

from dockyard.archive import pack
from dockyard.bus.auth import BusAuthError, Credentials
from dockyard.bus.permissions import CLI
from dockyard.bus.topology import STREAM_FEED
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    AnyEvent,
    AppLogLine,
    CancelRequested,
    DeployFailed,
    DeployRequested,
    DeploySucceeded,
    DestroyFailed,
    DestroyRequested,
    DestroySucceeded,
    LogLine,
    RunRequested,
    ScaleFailed,
    ScaleRequested,
    ScaleSucceeded,
    Terminal,
    new_id,
    type_of,
)
from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.contract.names import InvalidName
from dockyard.contract.names import check_app as _check_app
from dockyard.contract.names import check_deployment_id as _check_deployment_id
from dockyard.contract.plan import Plan, RolloutOverride, checked_override
from dockyard.contract.sinks import Sink, Sinks, SinkStatus, with_sink, without_sink
from dockyard.contract.state import LiveRelease, Maintenance, RolloutAction, RolloutProgress
from dockyard.pipeline import rollback
from dockyard.pipeline.config import check_name, check_values
from dockyard.plan.merge import build_plan
from dockyard.plan.operator import added, removed, validate_hook, validate_phase
from dockyard.plan.procfile import PROCESS_NAME
from dockyard.settings import Settings
from dockyard.state.builds import ManifestReader
from dockyard.state.config import ConfigStore, Versioned
from dockyard.state.deliveries import SinkStatusReader
from dockyard.state.formation import Formation, FormationReader
from dockyard.state.hooks import HookStore
from dockyard.state.maintenance import MaintenanceStore
from dockyard.state.registry import open_doors
from dockyard.state.rollouts import RolloutControl
from dockyard.state.routes import RouteReader
from dockyard.state.sinks import SinkStore
from dockyard.state.sources import SourceUploads


class ClientError(Exception):
    """A request that cannot be made as asked."""


@dataclass(frozen=True)
class KnownDeployment:
    """A deployment as the events name it: its id, app, release (0 before its build starts)
    and how it ended (None while it is queued or running)."""

    id: str
    app: str
    release: int = 0
    status: str | None = None

    @property
    def ended(self) -> bool:
        """Whether it ended (succeeded, failed or cancelled)."""
        return self.status is not None


class _Status(msgspec.Struct, frozen=True):
    status: str | None = None


class _Seen(msgspec.Struct, frozen=True):
    """The few fields of an event that say which deployment it is and how it stands."""

    type: str
    subject: str
    deploymentid: str
    release: int = 0
    data: _Status = _Status()


_ENDS = (type_of(DeploySucceeded), type_of(DeployFailed))


async def _quiet(exc: Exception) -> None:
    """nats-py's default error callback logs a traceback: the caller reports the error."""


def check_app(app: str) -> str:
    """An app name usable as a host label and a subject token (ClientError if not)."""
    try:
        return _check_app(app)
    except InvalidName as exc:
        raise ClientError(str(exc)) from None


def check_deployment_id(value: str) -> str:
    """A deployment id in its one accepted form (ClientError if not)."""
    try:
        return _check_deployment_id(value)
    except InvalidName as exc:
        raise ClientError(str(exc)) from None


@dataclass(frozen=True)
class ClientDoors:
    """The state the CLI (and any client in Python) uses."""

    config: ConfigStore
    hooks: HookStore
    sinks: SinkStore
    sources: SourceUploads
    manifests: ManifestReader
    routes: RouteReader
    sink_status: SinkStatusReader
    maintenance: MaintenanceStore
    formation: FormationReader
    rollouts: RolloutControl


ScaleEnd = ScaleSucceeded | ScaleFailed


@dataclass
class Followers:
    """Callbacks for what a followed deployment prints."""

    on_line: Callable[[LogLine], Awaitable[None]] | None = None
    on_event: Callable[[AnyEvent], Awaitable[None]] | None = None


@dataclass
class Watch:
    """Subscriptions following one deployment."""

    done: asyncio.Future[Terminal]
    subs: list[Any]

    async def result(self, wait: float | None = None) -> Terminal:
        """The terminal event, once the deployment ends (TimeoutError after `wait` seconds)."""
        return await asyncio.wait_for(asyncio.shield(self.done), wait)

    async def close(self) -> None:
        """Stop following, once the log lines already in the stream have arrived."""
        await _unsubscribe_drained(self.subs)


async def _unsubscribe_drained(subs: list[Any], within: float = 2.0) -> None:
    """Unsubscribe each, once what its stream already holds was delivered and handled (at most
    `within` seconds in all): the lines a service logged before the end are in the stream by
    the time its end arrives. A fixed 0.2 s wait stood here, on every followed deploy."""
    deadline = asyncio.get_running_loop().time() + within
    for sub in subs:
        while asyncio.get_running_loop().time() < deadline:
            try:
                info = await sub.consumer_info()
            except Exception:  # noqa: BLE001 (a broken connection: nothing more will arrive)
                break
            if not info.num_pending and not sub.pending_msgs:
                break
            await asyncio.sleep(0.005)
    for _ in range(3):  # a line taken from the queue may still be in its callback
        await asyncio.sleep(0)
    for sub in subs:
        await sub.unsubscribe()


@dataclass(frozen=True)
class DestroyOutcome:
    """How a destroy ended: what was removed, or why it was refused (nothing removed)."""

    operation_id: str
    removed: list[str]
    refused: str | None


def _any_kept(info: ConsumerInfo) -> bool:
    """Whether a new ordered consumer has anything to deliver (or delivered it already)."""
    return bool(info.num_pending or (info.delivered and info.delivered.consumer_seq))


class DockyardClient:
    """A connection to the bus with Dockyard's requests on it."""

    def __init__(self, nc: Client, doors: ClientDoors, settings: Settings) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.doors = doors
        self.settings = settings

    @classmethod
    async def connect(cls, settings: Settings) -> DockyardClient:
        """Connect to the bus named by settings (or the one `dockyard up` recorded)."""
        url = settings.bus_url()
        try:
            credentials = Credentials.load(settings.keys_dir, CLI)
        except BusAuthError as exc:
            raise ClientError(str(exc)) from None
        try:
            nc = await nats.connect(settings.bus_servers(), name="dockyard-cli",
                                    max_reconnect_attempts=2, connect_timeout=5, error_cb=_quiet,
                                    **credentials.options())
        except (nats.errors.NoServersError, OSError) as exc:
            raise ClientError(f"cannot reach the bus at {url}: {exc}") from exc
        except nats.errors.Error as exc:  # the server refused the identity
            raise ClientError(f"the bus at {url} refused identity {CLI!r}: {exc}") from exc
        try:
            doors = await open_doors(ClientDoors, nc.jetstream(), "cli")
        except BaseException:
            await nc.close()
            raise
        return cls(nc, doors, settings)

    async def close(self, *, at_once: bool = False) -> None:
        """Close the connection: drained, or at once (after an error nothing is worth waiting
        for, or while the connection is cut off and reconnecting: nats-py refuses to drain
        then). Closing a closed client does nothing."""
        if self.nc.is_closed:
            return
        if at_once or not self.nc.is_connected:  # cut off (reconnecting): nothing to drain
            await self.nc.close()
        else:
            await self.nc.drain()

    async def upload(self, app: str, path: Path, deployment_id: str) -> str:
        """Pack a source tree and put it in the object store; returns its object name."""
        if not path.is_dir():  # noqa: ASYNC240 (one local stat)
            raise ClientError(f"{path} is not a directory")
        return await self.doors.sources.upload(app, deployment_id, pack(path))

    async def request_deploy(self, app: str, path: Path | None, *, kind: str = "source",
                             runtime: str | None = None,
                             deployment_id: str | None = None,
                             source_object: str | None = None,
                             to_release: int | None = None,
                             rollout: RolloutOverride | None = None) -> DeployRequested:
        """Upload (for a source deploy, unless `source_object` names an upload already made)
        and publish the deploy request (a rollback's names its target, `to_release`; `rollout`
        replaces the manifest's canary steps, hold or watch window, RolloutError if it cannot
        be given)."""
        check_app(app)
        if rollout is not None:
            checked_override(rollout)
        dep = check_deployment_id(deployment_id) if deployment_id else new_id()
        source = source_object
        if source is None and path is not None:
            source = await self.upload(app, path, dep)
        cmd = DeployRequested(deployment_id=dep, app=app, kind=kind,  # type: ignore[arg-type]
                              source_object=source, runtime=runtime, to_release=to_release,
                              rollout=rollout)
        await self.js.publish(subjects.CMD_DEPLOY, codec.encode(cmd),
                                     headers={"Nats-Msg-Id": f"{dep}:deploy"})
        return cmd

    async def deploy(self, app: str, path: Path | None, followers: Followers, *,
                     kind: str = "source", runtime: str | None = None,
                     wait: float | None = None, to_release: int | None = None,
                     rollout: RolloutOverride | None = None) -> Terminal:
        """Request a deploy and follow it to its end (giving up after `wait` seconds)."""
        check_app(app)
        dep = new_id()
        watch = await self.watch(app, dep, followers)
        try:
            await self.request_deploy(app, path, kind=kind, runtime=runtime, deployment_id=dep,
                                      to_release=to_release, rollout=rollout)
            return await watch.result(wait)
        finally:
            await watch.close()

    async def follow(self, app: str, deployment_id: str, followers: Followers,
                     wait: float | None = None) -> Terminal:
        """Stream a deployment's log and events until it ends; returns the terminal event."""
        watch = await self.watch(app, deployment_id, followers)
        try:
            return await watch.result(wait)
        finally:
            await watch.close()

    async def watch(self, app: str, deployment_id: str, followers: Followers) -> Watch:
        """Subscribe to a deployment's log and events (from their start)."""
        check_app(app)
        check_deployment_id(deployment_id)
        done: asyncio.Future[Terminal] = asyncio.get_running_loop().create_future()

        async def on_log(msg: Msg) -> None:
            if followers.on_line:
                await followers.on_line(codec.decode_as(msg.data, LogLine))

        async def on_evt(msg: Msg) -> None:
            try:
                event = codec.decode_event(msg.data)
            except msgspec.MsgspecError:
                return
            if event.deployment_id != deployment_id:
                return
            try:
                if followers.on_event:
                    await followers.on_event(event)
            finally:  # a failing callback must not leave the caller waiting forever
                if isinstance(event, DeploySucceeded | DeployFailed) and not done.done():
                    done.set_result(event)

        # One ConsumerConfig each: nats-py fills in the deliver subject on the object it is given.
        # Events are read from the readers' mirror (bus/topology.py says why).
        log_sub = await self.js.subscribe(
            subjects.log(deployment_id), cb=on_log, ordered_consumer=True,
            stream=subjects.STREAM_LOGS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        evt_sub = await self.js.subscribe(
            subjects.app_events(app), cb=on_evt, ordered_consumer=True, stream=STREAM_FEED,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        return Watch(done=done, subs=[log_sub, evt_sub])

    async def cancel(self, app: str, deployment_id: str, reason: str = "cancelled by user") -> None:
        """Ask to cancel a deployment."""
        check_app(app)
        check_deployment_id(deployment_id)
        cmd = CancelRequested(deployment_id=deployment_id, app=app, reason=reason)
        await self.js.publish(subjects.CMD_CANCEL, codec.encode(cmd),
                                     headers={"Nats-Msg-Id": f"{deployment_id}:cancel"})

    async def live(self, app: str) -> LiveRelease | None:
        """The app's live release (None before its first deploy went live)."""
        return await self.doors.routes.live(check_app(app))

    async def run(self, app: str, command: str, on_line: Callable[[LogLine], Awaitable[None]],
                  *, limit: float, run_id: str, wait: float | None = None) -> LogLine:
        """Ask for a one-off run of `command` (stopped after `limit` seconds) from the app's
        live release and follow its output (on_line, each line as it comes) to its last line,
        which is returned (its exit_code says how it ended). ClientError after `wait` seconds
        without that end."""
        check_app(app)
        check_deployment_id(run_id)
        cmd = RunRequested(run_id=run_id, app=app, command=command, timeout=limit)
        # Following first: the log's first lines cannot come before the follower is there.
        sub = await self.js.subscribe(subjects.log(run_id), ordered_consumer=True,
                                      stream=subjects.STREAM_LOGS,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        try:
            await self.js.publish(subjects.CMD_RUN, codec.encode(cmd),
                                  headers={"Nats-Msg-Id": f"{run_id}:run"})
            async with asyncio.timeout(wait):
                while True:
                    try:
                        msg = await sub.next_msg(timeout=1.0)
                    except nats.errors.TimeoutError:
                        continue
                    line = codec.decode_as(msg.data, LogLine)
                    if line.exit_code is not None:
                        return line
                    await on_line(line)
        except TimeoutError:
            raise ClientError(f"run {run_id} of {app} did not end within {wait:g}s: is the "
                              "hook-runner running? (`dockyard status`)") from None

    async def destroy(self, app: str, on_event: Callable[[AnyEvent], Awaitable[None]] | None = None,
                      ) -> DestroyOutcome:
        """Ask to destroy an app and follow it to its end: what each step removed, or the
        builder's refusal."""
        check_app(app)
        operation = new_id()
        ended: asyncio.Future[DestroyOutcome] = asyncio.get_running_loop().create_future()
        removed: list[str] = []

        async def on_evt(msg: Msg) -> None:
            try:
                event = codec.decode_event(msg.data)
            except msgspec.MsgspecError:
                return
            if event.deployment_id != operation or ended.done():
                return
            if on_event is not None:
                await on_event(event)
            if isinstance(event, DestroyFailed):
                ended.set_result(DestroyOutcome(operation, removed, event.data.reason))
                return
            removed.extend(getattr(event.data, "removed", []))
            if isinstance(event, DestroySucceeded):
                ended.set_result(DestroyOutcome(operation, removed, None))

        # Subscribed before the request is published, so no step's event is missed.
        sub = await self.js.subscribe(
            subjects.event(app, "destroy", "*"), cb=on_evt, ordered_consumer=True,
            stream=STREAM_FEED, config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))
        try:
            cmd = DestroyRequested(operation_id=operation, app=app)
            await self.js.publish(subjects.CMD_DESTROY, codec.encode(cmd),
                                  headers={"Nats-Msg-Id": f"{operation}:destroy"})
            return await ended
        finally:
            await sub.unsubscribe()

    async def config_change(self, app: str, set_: dict[str, str],
                            unset: list[str]) -> Versioned:
        """Change config vars; the new version (ConfigError for a name that cannot be changed)."""
        check_app(app)
        for key in unset:
            check_name(key)
        check_values(set_)
        return await self.doors.config.change(app, set_, unset)

    async def config_show(self, app: str) -> Versioned:
        """The current config version and values."""
        check_app(app)
        return await self.doors.config.current(app)

    async def rollback_target(self, app: str, to: int | None) -> LiveRelease:
        """The release a rollback would run again: `to`, or the one before the live one
        (RollbackError, one line, if there is none or it is no longer kept)."""
        check_app(app)
        history = await self.doors.routes.live_history(app)
        return rollback.target(app, history, to, self.settings.keep_releases)

    async def has_release(self, app: str) -> bool:
        """Whether the app has a live release (a config change then makes a new one)."""
        return await self.doors.routes.live(app) is not None

    async def plan(self, app: str) -> tuple[Plan, int | None]:
        """The merged plan the next deploy of the live build would run, and the live release."""
        check_app(app)
        live = await self.doors.routes.live(app)
        files = await self.doors.manifests.manifest(app, live.spec.build_id) if live else {}
        hooks = (await self.doors.hooks.load(app)).hooks
        return build_plan(files, hooks), (live.release if live else None)

    async def add_hook(self, app: str, hook: OperatorHook) -> OperatorHooks:
        """Add an operator hook (runs after the repository's commands of its phase)."""
        check_app(app)
        hook = validate_hook(hook)
        return await self.doors.hooks.change(app, lambda hooks: added(hooks, hook))

    async def remove_hook(self, app: str, phase: str, label: str) -> OperatorHooks:
        """Remove an operator hook by phase and label."""
        check_app(app)
        validate_phase(phase, label)
        return await self.doors.hooks.change(app, lambda hooks: removed(hooks, app, phase, label))

    async def sinks(self, app: str) -> list[Sink]:
        """The app's notification sinks."""
        check_app(app)
        return list((await self.doors.sinks.load(app)).sinks)

    async def sink_statuses(self, app: str) -> list[tuple[Sink, SinkStatus]]:
        """The app's sinks, each with how it has answered lately."""
        sinks = await self.sinks(app)
        found = await self.doors.sink_status.statuses(app, [s.name for s in sinks])
        return [(s, found[s.name]) for s in sinks]

    async def add_sink(self, app: str, sink: Sink) -> Sinks:
        """Add (or replace by name) a notification sink."""
        check_app(app)
        return await self.doors.sinks.change(app, lambda current: with_sink(current, sink))

    async def remove_sink(self, app: str, name: str) -> Sinks:
        """Remove a notification sink by name."""
        check_app(app)
        return await self.doors.sinks.change(app, lambda current: without_sink(current, app, name))

    async def maintenance(self, app: str) -> Maintenance:
        """Whether the app's host answers its maintenance page."""
        check_app(app)
        return await self.doors.maintenance.get(app)

    async def turn_maintenance(self, app: str, enabled: bool,
                               message: str | None = None) -> Maintenance:
        """Turn maintenance on or off (MaintenanceError for a bad message); the router follows
        the record within moments."""
        check_app(app)
        return await self.doors.maintenance.turn(app, enabled, message)

    async def rollout(self, app: str) -> RolloutProgress | None:
        """The app's rollout in progress (a canary step or the watch window), or None."""
        check_app(app)
        return await self.doors.rollouts.progress(app)

    async def order_rollout(self, app: str, action: RolloutAction) -> RolloutProgress:
        """Order the app's rollout in progress to promote or abort (NoRollout if none); the
        router acts within a second."""
        check_app(app)
        return await self.doors.rollouts.give(app, action)

    async def _stream(self, stream: str, subject: str, follow: bool, idle: float,
                      done: Callable[[], bool] = lambda: False) -> AsyncGenerator[Msg, None]:
        """Every kept message on a subject, oldest first; with follow, new ones until done().

        Without follow it ends as soon as the last kept message is read (each message says how
        many are still pending), so reading costs no idle wait; `idle` is how long to wait for
        the next message before looking at done() again."""
        sub = await self.js.subscribe(subject, ordered_consumer=True, stream=stream,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        try:
            if not follow:
                info = await sub.consumer_info()
                if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                    return  # nothing kept
            while True:
                try:
                    msg = await sub.next_msg(timeout=idle)
                except nats.errors.TimeoutError:
                    if follow and not done():
                        continue
                    return
                yield msg
                if not follow and msg.metadata.num_pending == 0:
                    return
        finally:
            await sub.unsubscribe()

    async def known_deployments(self, app: str | None = None, *,
                                releases: bool = False) -> list[KnownDeployment]:
        """Every deployment the kept events name (of all apps, or one), oldest first: its
        deploy.queued event gives id and app, its deploy.succeeded or deploy.failed how it
        ended; with releases, build.started gives the release of those still running."""
        if app is not None:
            check_app(app)
        subject = subjects.event(app, "deploy", "*") if app else subjects.events_of("deploy", "*")
        found: dict[str, KnownDeployment] = {}
        async with aclosing(self._stream(STREAM_FEED, subject, False, 0.5)) as msgs:
            async for msg in msgs:
                try:
                    seen = msgspec.json.decode(msg.data, type=_Seen)
                except msgspec.MsgspecError:
                    continue
                known = found.setdefault(seen.deploymentid,
                                         KnownDeployment(id=seen.deploymentid, app=seen.subject))
                if seen.type in _ENDS:
                    found[known.id] = replace(known, release=seen.release or known.release,
                                              status=seen.data.status or "succeeded")
        if releases and any(not k.ended for k in found.values()):
            started = subjects.event(app, "build", "started") if app else \
                subjects.events_of("build", "started")
            async with aclosing(self._stream(STREAM_FEED, started, False, 0.5)) as msgs:
                async for msg in msgs:
                    try:
                        seen = msgspec.json.decode(msg.data, type=_Seen)
                    except msgspec.MsgspecError:
                        continue
                    known_ = found.get(seen.deploymentid)
                    if known_ is not None and not known_.release:
                        found[known_.id] = replace(known_, release=seen.release)
        return list(found.values())

    async def formation(self, app: str) -> Formation | None:
        """The app's formation, if it was ever scaled."""
        return await self.doors.formation.get(check_app(app))

    async def scale(self, app: str, *, kind: str = "scale", counts: dict[str, int] | None = None,
                    process: str | None = None, wait: float | None = None,
                    on_line: Callable[[LogLine], Awaitable[None]] | None = None) -> ScaleEnd:
        """Ask to scale (or restart) the live release and follow the operation to its end
        (ClientError first for what cannot be done: no live release, an unknown process type,
        a count out of bounds)."""
        from dockyard.pipeline.scaling import ScaleRefused, check_request

        check_app(app)
        live = await self.doors.routes.live(app)
        if live is None:
            raise ClientError(f"{app} has no live release to {kind}")
        try:
            check_request(live.spec.plan, kind, counts or {}, process)
        except ScaleRefused as exc:
            raise ClientError(str(exc)) from None
        op = new_id()
        done: asyncio.Future[ScaleEnd] = asyncio.get_running_loop().create_future()

        async def on_evt(msg: Msg) -> None:
            try:
                event = codec.decode_event(msg.data)
            except msgspec.MsgspecError:
                return
            if (event.deployment_id == op and isinstance(event, ScaleSucceeded | ScaleFailed)
                    and not done.done()):
                done.set_result(event)

        async def on_log(msg: Msg) -> None:
            if on_line is not None:
                await on_line(codec.decode_as(msg.data, LogLine))

        subs = [await self.js.subscribe(
            subjects.app_events(app), cb=on_evt, ordered_consumer=True, stream=STREAM_FEED,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW)),
            await self.js.subscribe(
            subjects.log(op), cb=on_log, ordered_consumer=True, stream=subjects.STREAM_LOGS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))]
        try:
            cmd = ScaleRequested(deployment_id=op, app=app, kind=kind,  # type: ignore[arg-type]
                                 counts=counts or {}, process=process)
            await self.js.publish(subjects.CMD_SCALE, codec.encode(cmd),
                                  headers={"Nats-Msg-Id": f"{op}:scale"})
            return await asyncio.wait_for(asyncio.shield(done), wait)
        finally:
            await _unsubscribe_drained(subs)

    async def app_exists(self, app: str) -> bool:
        """Whether an app is known: it has events (deployments), a live release, config,
        operator hooks or notification sinks."""
        check_app(app)
        info = await self.js.stream_info(STREAM_FEED, subjects_filter=subjects.app_events(app))
        if info.state.subjects and await self._deployed_since_destroyed(app):
            return True
        if await self.doors.routes.live(app) is not None:
            return True
        if (await self.doors.config.current(app)).version > 0:
            return True
        if (await self.doors.hooks.load(app)).hooks:
            return True
        return bool((await self.doors.sinks.load(app)).sinks)

    async def _deployed_since_destroyed(self, app: str) -> bool:
        """Whether the app's kept events hold a deployment after its last destroy (always, if
        it was never destroyed): the events before a destroy are an earlier app's."""
        last = await self._last_seq(subjects.event(app, "destroy", "succeeded"))
        if last is None:
            return True
        sub = await self.js.subscribe(
            subjects.event(app, "deploy", "*"), ordered_consumer=True, stream=STREAM_FEED,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=last + 1))
        try:
            return _any_kept(await sub.consumer_info())
        finally:
            await sub.unsubscribe()

    async def _last_seq(self, subject: str) -> int | None:
        """The stream sequence of the last kept event on a subject, if any."""
        sub = await self.js.subscribe(subject, ordered_consumer=True, stream=STREAM_FEED,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST))
        try:
            if not _any_kept(await sub.consumer_info()):
                return None
            msg = await sub.next_msg(timeout=5)
            seq: int = msg.metadata.sequence.stream
            return seq
        finally:
            await sub.unsubscribe()

    async def events(self, app: str | None = None, follow: bool = False,
                     idle: float = 0.5) -> list[AnyEvent]:
        """Events so far (all apps, or one), decoded; undecodable ones are skipped."""
        subject = subjects.app_events(check_app(app)) if app is not None else subjects.EVT_ALL
        found: list[AnyEvent] = []
        async with aclosing(self._stream(STREAM_FEED, subject, follow, idle)) as msgs:
            async for msg in msgs:
                try:
                    found.append(codec.decode_event(msg.data))
                except msgspec.MsgspecError:
                    continue
        return found

    async def raw_events(self, app: str | None, on_raw: Callable[[bytes], Awaitable[None]],
                         follow: bool, idle: float = 0.5) -> None:
        """Every event's raw JSON (for `dockyard events`), optionally following new ones."""
        subject = subjects.app_events(check_app(app)) if app is not None else subjects.EVT_ALL
        async with aclosing(self._stream(STREAM_FEED, subject, follow, idle)) as msgs:
            async for msg in msgs:
                await on_raw(msg.data)

    async def app_log_lines(self, app: str, on_line: Callable[[AppLogLine], Awaitable[None]],
                            *, process: str | None = None, last: int = 100,
                            follow: bool = False) -> None:
        """The last `last` kept lines of the app's running instances' output (of one process
        type, if given), oldest first; with follow, then every new line until cancelled."""
        check_app(app)
        if process is not None and not PROCESS_NAME.fullmatch(process):
            raise ClientError(f"not a process type name: {process!r} (letters, digits, - and _)")
        sub = await self.js.subscribe(subjects.applogs_of(app, process), ordered_consumer=True,
                                      stream=subjects.STREAM_APPLOGS,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        try:
            kept: deque[AppLogLine] = deque(maxlen=max(last, 0))
            info = await sub.consumer_info()
            # What is kept may have been pushed already (delivered, not yet read): each message
            # says how many were still pending after it.
            more = bool(info.num_pending or (info.delivered and info.delivered.consumer_seq))
            while more:
                msg = await sub.next_msg(timeout=10)
                kept.append(codec.decode_as(msg.data, AppLogLine))
                more = msg.metadata.num_pending > 0
            for line in kept:
                await on_line(line)
            while follow:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                await on_line(codec.decode_as(msg.data, AppLogLine))
        finally:
            await sub.unsubscribe()

    async def log_lines(self, deployment_id: str, on_line: Callable[[LogLine], Awaitable[None]],
                        follow: bool, idle: float = 0.5, *, app: str | None = None) -> None:
        """A deployment's kept log; with follow, until the deployment ends (knowing its app
        narrows the events watched for that end to the app's deploy events)."""
        check_deployment_id(deployment_id)
        if app is not None:
            check_app(app)
        ended = asyncio.Event()

        async def on_evt(msg: Msg) -> None:
            try:
                seen = msgspec.json.decode(msg.data, type=_Seen)
            except msgspec.MsgspecError:
                return
            if seen.deploymentid == deployment_id and seen.type in _ENDS:
                ended.set()

        evt_sub = None
        if follow:
            # Only the deploy.* events can end a deployment: no need to replay every event.
            watched = subjects.event(app, "deploy", "*") if app else \
                subjects.events_of("deploy", "*")
            evt_sub = await self.js.subscribe(
                watched, cb=on_evt, ordered_consumer=True,
                stream=STREAM_FEED, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        try:
            async with aclosing(self._stream(subjects.STREAM_LOGS, subjects.log(deployment_id),
                                             follow, idle, ended.is_set)) as msgs:
                async for msg in msgs:
                    await on_line(codec.decode_as(msg.data, LogLine))
        finally:
            if evt_sub is not None:
                await evt_sub.unsubscribe()
