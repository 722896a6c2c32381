"""Deploys in flight (the `inflight` bucket): each app's deploy between its build and its end,
with the phase now due and its deadline, and the deploys the builder's watchdog ended.

Keys: `app.<app>` (InFlight, written by the builder alone) and `timedout.<deployment>` (TimedOut,
created once: whoever creates it ends the deploy; every service reads it to drop late events).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.contract.state import InFlight, TimedOut
from dockyard.state import kv
from dockyard.state.door import Door, Grant

TIMED_OUT = "timedout"

_record = msgspec.json.Decoder(InFlight)
_verdict = msgspec.json.Decoder(TimedOut)


def app_key(app: str) -> str:
    """KV key of an app's deploy in flight."""
    return f"app.{app}"


def timed_out_key(deployment_id: str) -> str:
    """KV key of a deploy the watchdog ended."""
    return f"{TIMED_OUT}.{deployment_id}"


class TimeoutReader(Protocol):
    """Whether the watchdog ended a deployment."""

    async def timed_out(self, deployment_id: str) -> TimedOut | None:
        """The watchdog's verdict on a deployment, if it ended it."""


class InFlightRecords(TimeoutReader, Protocol):
    """The deploys in flight (the builder)."""

    async def get(self, app: str) -> InFlight | None:
        """The app's deploy in flight, if any."""

    async def all(self) -> list[InFlight]:
        """Every app's deploy in flight."""

    async def change(self, app: str,
                     fn: Callable[[InFlight | None], InFlight | None]) -> InFlight | None:
        """Apply fn to the app's record atomically (None deletes it); the record after."""

    async def end(self, app: str, deployment_id: str) -> None:
        """Forget the app's record, if it is this deployment's."""

    async def time_out(self, verdict: TimedOut) -> TimedOut:
        """Record the verdict unless one is recorded; the verdict that stands."""


class NatsInFlight:
    """InFlightRecords on the `inflight` bucket."""

    def __init__(self, bucket: KeyValue, js: JetStreamContext) -> None:
        self.kv = bucket
        self.js = js

    async def timed_out(self, deployment_id: str) -> TimedOut | None:
        """The watchdog's verdict on a deployment, if it ended it."""
        raw, _ = await kv.read(self.kv, timed_out_key(deployment_id))
        return None if raw is None else _verdict.decode(raw)

    async def get(self, app: str) -> InFlight | None:
        """The app's deploy in flight, if any."""
        raw, _ = await kv.read(self.kv, app_key(app))
        return None if raw is None else _record.decode(raw)

    async def all(self) -> list[InFlight]:
        """Every app's deploy in flight."""
        found = []
        for key in await kv.keys(self.js, subjects.KV_INFLIGHT, "app.>"):
            if (record := await self.get(key.removeprefix("app."))) is not None:
                found.append(record)
        return found

    async def change(self, app: str,
                     fn: Callable[[InFlight | None], InFlight | None]) -> InFlight | None:
        """Apply fn to the app's record atomically (None deletes it); the record after."""
        key = app_key(app)
        for _ in range(kv.CAS_TRIES):
            raw, revision = await kv.read(self.kv, key)
            before = None if raw is None else _record.decode(raw)
            after = fn(before)
            if after == before:
                return after
            if after is None:
                try:
                    await self.kv.delete(key, last=revision)
                except Exception:  # noqa: BLE001 - changed under us: look again
                    continue
                return None
            if await kv.write(self.kv, key, msgspec.json.encode(after), revision):
                return after
        raise kv.Busy(subjects.KV_INFLIGHT, key)

    async def end(self, app: str, deployment_id: str) -> None:
        """Forget the app's record, if it is this deployment's."""
        await self.change(app, lambda r: None if r is not None and
                          r.deployment_id == deployment_id else r)

    async def time_out(self, verdict: TimedOut) -> TimedOut:
        """Record the verdict unless one is recorded (create-only); the verdict that stands."""
        key = timed_out_key(verdict.deployment_id)
        if await kv.write(self.kv, key, msgspec.json.encode(verdict), 0):
            return verdict
        standing = await self.timed_out(verdict.deployment_id)
        return standing or verdict


async def open_inflight(js: JetStreamContext, service: str) -> InFlightRecords:
    """The deploys in flight, writable (the builder)."""
    del service
    return NatsInFlight(await js.key_value(subjects.KV_INFLIGHT), js)


async def open_timeouts(js: JetStreamContext, service: str) -> TimeoutReader:
    """The watchdog's verdicts, read-only."""
    return await open_inflight(js, service)


WRITER = Door(InFlightRecords, open_inflight, (Grant("kv", subjects.KV_INFLIGHT, "write"),))
TIMEOUTS = Door(TimeoutReader, open_timeouts,
                (Grant("kv", subjects.KV_INFLIGHT, "read", keys=TIMED_OUT),))
