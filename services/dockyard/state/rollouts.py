"""Rollouts in progress (the `rollouts` bucket): the router running a canary or a watch window
says where it is (`state.<app>`); an operator orders it to promote or abort (`order.<app>`).

Only the router writes states; only the cli and the api write orders. An order names the
deployment it is for, so one left from an earlier rollout never acts on the next.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.state import RolloutAction, RolloutOrder, RolloutProgress
from dockyard.state import kv
from dockyard.state.door import Door, Grant

STATE, ORDER = "state", "order"


class NoRollout(LookupError):
    """An order for an app with no rollout in progress."""

    def __init__(self, app: str) -> None:
        super().__init__(f"{app} has no rollout in progress (no canary step, no watch window)")


class RolloutBoard(Protocol):
    """The router's side: says where its rollouts are, reads the orders given to them."""

    async def show(self, progress: RolloutProgress) -> None:
        """Record where an app's rollout is now."""

    async def done(self, app: str) -> None:
        """The app's rollout ended: its state and any order go."""

    async def order(self, app: str) -> RolloutOrder | None:
        """The order given to the app's rollout, if any."""


class RolloutControl(Protocol):
    """The operator's side (the cli, the api): reads rollouts, gives orders."""

    async def progress(self, app: str) -> RolloutProgress | None:
        """The app's rollout in progress, or None."""

    async def give(self, app: str, action: RolloutAction) -> RolloutProgress:
        """Order the app's rollout in progress to promote or abort (NoRollout if none)."""


_progress = msgspec.json.Decoder(RolloutProgress)
_order = msgspec.json.Decoder(RolloutOrder)


class NatsRollouts:
    """RolloutBoard and RolloutControl on the `rollouts` bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        self.kv = bucket

    async def show(self, progress: RolloutProgress) -> None:
        await self.kv.put(f"{STATE}.{progress.app}", msgspec.json.encode(
            msgspec.structs.replace(progress, updated=datetime.now(UTC))))

    async def done(self, app: str) -> None:
        for key in (f"{STATE}.{app}", f"{ORDER}.{app}"):
            raw, _ = await kv.read(self.kv, key)
            if raw is not None:
                await self.kv.delete(key)

    async def order(self, app: str) -> RolloutOrder | None:
        raw, _ = await kv.read(self.kv, f"{ORDER}.{app}")
        try:
            return None if raw is None else _order.decode(raw)
        except msgspec.DecodeError:
            return None  # not an order of ours: none given

    async def progress(self, app: str) -> RolloutProgress | None:
        raw, _ = await kv.read(self.kv, f"{STATE}.{app}")
        try:
            return None if raw is None else _progress.decode(raw)
        except msgspec.DecodeError:
            return None

    async def give(self, app: str, action: RolloutAction) -> RolloutProgress:
        progress = await self.progress(app)
        if progress is None:
            raise NoRollout(app)
        await self.kv.put(f"{ORDER}.{app}", msgspec.json.encode(RolloutOrder(
            app=app, deployment_id=progress.deployment_id, action=action,
            at=datetime.now(UTC))))
        return progress


async def open_rollouts(js: JetStreamContext, service: str) -> NatsRollouts:
    """The rollouts bucket (each side uses its own half, as its grants allow)."""
    del service
    return NatsRollouts(await js.key_value(subjects.KV_ROLLOUTS))


BOARD = Door(RolloutBoard, open_rollouts,
             (Grant("kv", subjects.KV_ROLLOUTS, "write", keys=STATE),
              Grant("kv", subjects.KV_ROLLOUTS, "read", keys=ORDER),
              Grant("kv", subjects.KV_ROLLOUTS, "forget", keys=ORDER)))
CONTROL = Door(RolloutControl, open_rollouts,
               (Grant("kv", subjects.KV_ROLLOUTS, "read", keys=STATE),
                Grant("kv", subjects.KV_ROLLOUTS, "write", keys=ORDER)))
