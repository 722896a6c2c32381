"""Release numbers: v1, v2, ... one per deployment that gets its turn (the `releases` bucket).

The key `<app>` holds the last number given; `<app>.<deployment>` the number a deployment got,
so a redelivered request gets the same one again.
"""

from __future__ import annotations

from typing import Protocol

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.state import kv
from dockyard.state.door import Door, Grant


class ReleaseNumbers(Protocol):
    """Gives each deployment its release number."""

    async def allocate(self, app: str, deployment_id: str) -> int:
        """The deployment's release number (the same one again on redelivery)."""

    async def forget(self, app: str) -> None:
        """Forget the app's numbering: its next deploy is v1 again (the app is destroyed)."""


class NatsReleaseNumbers:
    """ReleaseNumbers on the `releases` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def allocate(self, app: str, deployment_id: str) -> int:
        """The deployment's release number (the same one again on redelivery)."""
        given = f"{app}.{deployment_id}"
        known, _ = await kv.read(self.kv, given)
        if known is not None:
            return int(known)
        _, number = await kv.change(self.kv, subjects.KV_RELEASES, app,
                                    lambda raw: int(raw or b"0"), lambda n: n + 1,
                                    lambda n: str(n).encode())
        await self.kv.put(given, str(number).encode())
        return number

    async def forget(self, app: str) -> None:
        """Purge the app's counter and the numbers given to its deployments."""
        await kv.purge(self.js, self.kv, subjects.KV_RELEASES, f"{app}.>", app)


async def open_release_numbers(js: JetStreamContext, service: str) -> ReleaseNumbers:
    """The release counters."""
    del service
    return NatsReleaseNumbers(js, await js.key_value(subjects.KV_RELEASES))


DOOR = Door(ReleaseNumbers, open_release_numbers, (Grant("kv", subjects.KV_RELEASES, "write"),))
