"""Operator hooks of each app (set through the CLI or API), in the `hooks` bucket by app name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.manifest import OperatorHooks
from dockyard.state import kv
from dockyard.state.door import Door, Grant

_decoder = msgspec.json.Decoder(OperatorHooks)


class HookReader(Protocol):
    """Reads an app's operator hooks."""

    async def load(self, app: str) -> OperatorHooks:
        """Every operator hook of an app, in the order they were added."""


class HookStore(HookReader, Protocol):
    """Reads and changes an app's operator hooks."""

    async def change(self, app: str,
                     fn: Callable[[OperatorHooks], OperatorHooks]) -> OperatorHooks:
        """Apply fn atomically (fn may raise to refuse); the hooks after."""


class HookKeeper(HookStore, Protocol):
    """Changes and forgets operator hooks (the builder, when an app is destroyed)."""

    async def forget(self, app: str) -> None:
        """Remove every operator hook of an app."""


class NatsHookStore:
    """HookStore on the `hooks` bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        self.kv = bucket

    async def load(self, app: str) -> OperatorHooks:
        """Every operator hook of an app, in the order they were added."""
        raw, _ = await kv.read(self.kv, app)
        return _decoder.decode(raw) if raw else OperatorHooks()

    async def change(self, app: str,
                     fn: Callable[[OperatorHooks], OperatorHooks]) -> OperatorHooks:
        """Apply fn atomically; the hooks after."""
        _, after = await kv.change(self.kv, subjects.KV_HOOKS, app,
                                   lambda raw: _decoder.decode(raw) if raw else OperatorHooks(),
                                   fn, msgspec.json.encode)
        return after

    async def forget(self, app: str) -> None:
        """Purge the app's hooks."""
        await self.kv.purge(app)


async def open_hook_store(js: JetStreamContext, service: str) -> HookStore:
    """Operator hooks, writable."""
    del service
    return NatsHookStore(await js.key_value(subjects.KV_HOOKS))


async def open_hook_keeper(js: JetStreamContext, service: str) -> HookKeeper:
    """Operator hooks, writable and forgettable."""
    del service
    return NatsHookStore(await js.key_value(subjects.KV_HOOKS))


async def open_hook_reader(js: JetStreamContext, service: str) -> HookReader:
    """Operator hooks, read-only."""
    return await open_hook_store(js, service)


STORE = Door(HookStore, open_hook_store, (Grant("kv", subjects.KV_HOOKS, "write"),))
KEEPER = Door(HookKeeper, open_hook_keeper, (Grant("kv", subjects.KV_HOOKS, "write"),))
READER = Door(HookReader, open_hook_reader, (Grant("kv", subjects.KV_HOOKS, "read"),))
