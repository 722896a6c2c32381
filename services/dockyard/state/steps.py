"""Step records: what a service finished for a deployment, so a redelivery never does it twice.

Keys are `<service>.<deployment>.<step>`: each service writes only under its own name, and a
service may be granted reading another's records (the router reads the hook-runner's verdicts).
"""

from __future__ import annotations

from typing import Any, Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import codec, subjects
from dockyard.contract.events import AnyEvent, Event
from dockyard.state import kv
from dockyard.state.door import Door, Grant

HOOK_RUNNER = "hook-runner"


def key(service: str, deployment_id: str, step: str) -> str:
    """KV key of one step of one deployment."""
    return f"{service}.{deployment_id}.{step}"


class StepRecords(Protocol):
    """A service's own step records."""

    async def get(self, deployment_id: str, step: str) -> bytes | None:
        """The recorded result of a finished step, if any."""

    async def put(self, deployment_id: str, step: str, result: bytes) -> None:
        """Record that a step finished, with its result."""

    async def outcome(self, deployment_id: str, step: str) -> AnyEvent | None:
        """The event a finished step published (to publish again with the same id)."""

    async def finish(self, deployment_id: str, step: str, event: Event[Any]) -> None:
        """Record a step's outcome event."""


class Verdicts(Protocol):
    """The hook-runner's recorded phase outcomes, read by the router before a switch."""

    async def outcome(self, deployment_id: str, step: str) -> AnyEvent | None:
        """The outcome event the hook-runner recorded for a step, if any."""


class NatsStepRecords:
    """Step records of one service in the `steps` bucket."""

    def __init__(self, bucket: KeyValue, service: str) -> None:
        self.kv = bucket
        self.service = service

    async def get(self, deployment_id: str, step: str) -> bytes | None:
        """The recorded result of a finished step, if any."""
        value, _ = await kv.read(self.kv, key(self.service, deployment_id, step))
        return value

    async def put(self, deployment_id: str, step: str, result: bytes) -> None:
        """Record that a step finished, with its result."""
        await self.kv.put(key(self.service, deployment_id, step), result)

    async def outcome(self, deployment_id: str, step: str) -> AnyEvent | None:
        """The event a finished step published, decoded."""
        data = await self.get(deployment_id, step)
        return None if data is None else codec.decode_event(data)

    async def finish(self, deployment_id: str, step: str, event: Event[Any]) -> None:
        """Record a step's outcome event."""
        await self.put(deployment_id, step, codec.encode(event))


async def open_steps(js: JetStreamContext, service: str) -> StepRecords:
    """The service's own step records."""
    return NatsStepRecords(await js.key_value(subjects.KV_STEPS), service)


async def open_verdicts(js: JetStreamContext, service: str) -> Verdicts:
    """The hook-runner's step records, read-only."""
    del service
    return NatsStepRecords(await js.key_value(subjects.KV_STEPS), HOOK_RUNNER)


OWN = Door(StepRecords, open_steps, (Grant("kv", subjects.KV_STEPS, "write", keys="{service}"),))
VERDICTS = Door(Verdicts, open_verdicts,
                (Grant("kv", subjects.KV_STEPS, "read", keys=HOOK_RUNNER),))
