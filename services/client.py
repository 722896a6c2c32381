"""What the CLI (and anyone in Python) does on the bus: upload, request, follow, read."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.builder.handlers import manifest_object
from dockyard.builder.source import object_name, pack
from dockyard.bus.topology import Stores, connect_stores
from dockyard.pipeline import config as config_store
from dockyard.pipeline.live import live_release
from dockyard.plan.merge import build_plan
from dockyard.plan.operator import add_hook, list_hooks, remove_hook
from dockyard.schemas import codec, subjects
from dockyard.schemas.manifest import OperatorHook, OperatorHooks
from dockyard.schemas.plan import Plan
from dockyard.schemas.events import (
    AnyEvent,
    CancelRequested,
    DeployFailed,
    DeployRequested,
    DeploySucceeded,
    LogLine,
    new_id,
)
from dockyard.settings import Settings

APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
Terminal = DeploySucceeded | DeployFailed


class ClientError(Exception):
    """A request that cannot be made as asked."""


def check_app(app: str) -> str:
    """An app name usable as a host label and a subject token."""
    if not APP_NAME.match(app):
        raise ClientError(f"invalid app name {app!r}: use 1-63 lowercase letters, digits and "
                          "hyphens, starting and ending with a letter or digit")
    return app


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

    async def result(self, timeout: float | None = None) -> Terminal:
        """The terminal event, once the deployment ends."""
        return await asyncio.wait_for(asyncio.shield(self.done), timeout)

    async def close(self) -> None:
        """Stop following (after letting the last lines arrive)."""
        await asyncio.sleep(0.2)
        for sub in self.subs:
            await sub.unsubscribe()


class DockyardClient:
    """A connection to the bus with Dockyard's requests on it."""

    def __init__(self, stores: Stores, settings: Settings) -> None:
        self.stores = stores
        self.nc: Client = stores.nc
        self.settings = settings

    @classmethod
    async def connect(cls, settings: Settings) -> DockyardClient:
        """Connect to the bus named by settings (or the one `dockyard up` recorded)."""
        url = settings.bus_url()
        try:
            stores = await connect_stores(url, name="dockyard-cli")
        except (nats.errors.NoServersError, OSError) as exc:
            raise ClientError(f"cannot reach the bus at {url}: {exc}") from exc
        return cls(stores, settings)

    async def close(self) -> None:
        """Close the connection."""
        await self.stores.close()

    async def upload(self, app: str, path: Path, deployment_id: str) -> str:
        """Pack a source tree and put it in the object store; returns its object name."""
        if not path.is_dir():
            raise ClientError(f"{path} is not a directory")
        name = object_name(app, deployment_id)
        await self.stores.sources.put(name, pack(path))
        return name

    async def request_deploy(self, app: str, path: Path | None, *, kind: str = "source",
                             runtime: str | None = None,
                             deployment_id: str | None = None) -> DeployRequested:
        """Upload (for a source deploy) and publish the deploy request."""
        check_app(app)
        dep = deployment_id or new_id()
        source = await self.upload(app, path, dep) if path is not None else None
        cmd = DeployRequested(deployment_id=dep, app=app, kind=kind,  # type: ignore[arg-type]
                              source_object=source, runtime=runtime)
        await self.stores.js.publish(subjects.CMD_DEPLOY, codec.encode(cmd),
                                     headers={"Nats-Msg-Id": f"{dep}:deploy"})
        return cmd

    async def deploy(self, app: str, path: Path | None, followers: Followers, *,
                     kind: str = "source", runtime: str | None = None,
                     timeout: float | None = None) -> Terminal:
        """Request a deploy and follow it to its end."""
        check_app(app)
        dep = new_id()
        watch = await self.watch(app, dep, followers)
        try:
            await self.request_deploy(app, path, kind=kind, runtime=runtime, deployment_id=dep)
            return await watch.result(timeout)
        finally:
            await watch.close()

    async def follow(self, app: str, deployment_id: str, followers: Followers,
                     timeout: float | None = None) -> Terminal:
        """Stream a deployment's log and events until it ends; returns the terminal event."""
        watch = await self.watch(app, deployment_id, followers)
        try:
            return await watch.result(timeout)
        finally:
            await watch.close()

    async def watch(self, app: str, deployment_id: str, followers: Followers) -> Watch:
        """Subscribe to a deployment's log and events (from their start)."""
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
        log_sub = await self.stores.js.subscribe(
            subjects.log(deployment_id), cb=on_log, ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        evt_sub = await self.stores.js.subscribe(
            subjects.app_events(app), cb=on_evt, ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        return Watch(done=done, subs=[log_sub, evt_sub])

    async def cancel(self, app: str, deployment_id: str, reason: str = "cancelled by user") -> None:
        """Ask to cancel a deployment."""
        cmd = CancelRequested(deployment_id=deployment_id, app=app, reason=reason)
        await self.stores.js.publish(subjects.CMD_CANCEL, codec.encode(cmd),
                                     headers={"Nats-Msg-Id": f"{deployment_id}:cancel"})

    async def config_change(self, app: str, set_: dict[str, str], unset: list[str]) -> int:
        """Change config vars; returns the new config version."""
        check_app(app)
        return await config_store.change(self.stores.config, app, set_, unset)

    async def config_show(self, app: str) -> tuple[int, dict[str, str]]:
        """The current config version and values."""
        check_app(app)
        return await config_store.current(self.stores.config, app)

    async def has_release(self, app: str) -> bool:
        """Whether the app has a live release (a config change then makes a new one)."""
        return await live_release(self.stores.state, app) is not None

    async def plan(self, app: str) -> tuple[Plan, int | None]:
        """The merged plan the next deploy of the live build would run, and the live release."""
        check_app(app)
        live = await live_release(self.stores.state, app)
        files: dict[str, str] = {}
        if live is not None:
            stored = await self.stores.builds.get(manifest_object(app, live.spec.build_id))
            files = msgspec.json.decode(stored.data or b"{}", type=dict[str, str])
        hooks = (await list_hooks(self.stores.hooks, app)).hooks
        return build_plan(files, hooks), (live.release if live else None)

    async def add_hook(self, app: str, hook: OperatorHook) -> OperatorHooks:
        """Add an operator hook (runs after the repository's commands of its phase)."""
        check_app(app)
        return await add_hook(self.stores.hooks, app, hook)

    async def remove_hook(self, app: str, phase: str, label: str) -> OperatorHooks:
        """Remove an operator hook by phase and label."""
        check_app(app)
        return await remove_hook(self.stores.hooks, app, phase, label)

    async def _stream(self, subject: str, follow: bool, idle: float,
                      done: Callable[[], bool] = lambda: False) -> AsyncIterator[Msg]:
        """Every kept message on a subject, oldest first; with follow, new ones until done()."""
        sub = await self.stores.js.subscribe(subject, ordered_consumer=True,
                                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        try:
            while True:
                try:
                    yield await sub.next_msg(timeout=idle)
                except nats.errors.TimeoutError:
                    if follow and not done():
                        continue
                    return
        finally:
            await sub.unsubscribe()

    async def events(self, app: str | None = None, follow: bool = False,
                     idle: float = 0.5) -> list[AnyEvent]:
        """Events so far (all apps, or one), decoded; undecodable ones are skipped."""
        subject = subjects.app_events(app) if app else subjects.EVT_ALL
        found: list[AnyEvent] = []
        async for msg in self._stream(subject, follow, idle):
            try:
                found.append(codec.decode_event(msg.data))
            except msgspec.MsgspecError:
                continue
        return found

    async def raw_events(self, app: str | None, on_raw: Callable[[bytes], Awaitable[None]],
                         follow: bool, idle: float = 0.5) -> None:
        """Every event's raw JSON (for `dockyard events`), optionally following new ones."""
        subject = subjects.app_events(app) if app else subjects.EVT_ALL
        async for msg in self._stream(subject, follow, idle):
            await on_raw(msg.data)

    async def log_lines(self, deployment_id: str, on_line: Callable[[LogLine], Awaitable[None]],
                        follow: bool, idle: float = 0.5) -> None:
        """A deployment's kept log; with follow, until the deployment ends."""
        ended = asyncio.Event()

        async def on_evt(msg: Msg) -> None:
            try:
                event = codec.decode_event(msg.data)
            except msgspec.MsgspecError:
                return
            if event.deployment_id == deployment_id and isinstance(event, DeploySucceeded | DeployFailed):
                ended.set()

        evt_sub = None
        if follow:
            # Only the deploy.* events can end a deployment: no need to replay every event.
            evt_sub = await self.stores.js.subscribe(
                subjects.events_of("deploy", "*"), cb=on_evt, ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        try:
            async for msg in self._stream(subjects.log(deployment_id), follow, idle, ended.is_set):
                await on_line(codec.decode_as(msg.data, LogLine))
        finally:
            if evt_sub is not None:
                await evt_sub.unsubscribe()
