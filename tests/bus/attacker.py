"""A plain nats-py client trying things on the bus, as one identity (or none), recording refusals.

The server answers a refused publish or subscription with `-ERR 'Permissions Violation ...'`,
which nats-py hands to the error callback; a request ends with the first of its reply and that
refusal.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from dockyard.bus.auth import Credentials

# Every identity of a stack; None is a client without credentials.
PUBLISH_REFUSED = 'permissions violation for publish to "{}"'
SUBSCRIBE_REFUSED = 'permissions violation for subscription to "{}"'


@dataclass
class Attacker:
    """A connection as one identity that tries publishes, requests and subscriptions."""

    identity: str
    nc: Client
    errors: list[str] = field(default_factory=list)
    # Set on every error the server sends.
    erred: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, url: str, keys_dir: Path, identity: str) -> Attacker:
        """Connect with an identity's seed (and its own inbox prefix)."""
        attacker = cls(identity=identity, nc=Client())

        async def on_error(exc: Exception) -> None:
            attacker.errors.append(str(exc).lower())
            attacker.erred.set()

        attacker.nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False,
                                         connect_timeout=5,
                                         **Credentials.load(keys_dir, identity).options())
        return attacker

    def refused(self, template: str, subject: str) -> bool:
        """Whether the server refused this subject (per the error template)."""
        wanted = template.format(subject.lower())
        return any(wanted in e for e in self.errors)

    async def request(self, subject: str, payload: bytes = b"",
                      headers: dict[str, str] | None = None, within: float = 10.0) -> bytes | None:
        """The reply to a request, or None when the server refused to let it be published."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        try:
            self.erred.clear()
            await self.nc.publish(subject, payload, reply=inbox, headers=headers)
            await self.nc.flush()
            reply = asyncio.ensure_future(sub.next_msg(timeout=within))
            while not self.refused(PUBLISH_REFUSED, subject):
                erred = asyncio.ensure_future(self.erred.wait())
                await asyncio.wait({reply, erred}, return_when=asyncio.FIRST_COMPLETED)
                erred.cancel()
                self.erred.clear()
                if reply.done():
                    return reply.result().data
            reply.cancel()
            return None
        finally:
            await sub.unsubscribe()

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A JetStream API request: its decoded answer, or None when refused."""
        raw = await self.request(subject, json.dumps(body or {}).encode())
        return None if raw is None else dict(json.loads(raw))

    async def may_subscribe(self, subject: str, within: float = 10.0) -> bool:
        """Whether the server accepted a subscription to subject.

        A sentinel subscription nobody may make follows it: the server answers subscriptions
        in order, so once the sentinel's refusal is in, the subject's would be too."""
        sub = await self.nc.subscribe(subject)
        sentinel = f"_INBOX.sentinel-{secrets.token_hex(4)}.x"
        await self.nc.subscribe(sentinel)
        await self.nc.flush()
        async with asyncio.timeout(within):
            while not self.refused(SUBSCRIBE_REFUSED, sentinel):
                self.erred.clear()
                await self.erred.wait()
        accepted = not self.refused(SUBSCRIBE_REFUSED, subject)
        if accepted:
            await sub.unsubscribe()
        return accepted

    async def close(self) -> None:
        """Close the connection."""
        await self.nc.close()


async def connect_without_credentials(url: str) -> Exception | None:
    """The error a client without credentials gets (None if it got in)."""
    try:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5,
                                max_reconnect_attempts=0)
    except Exception as exc:  # noqa: BLE001 (what the server answered is the result)
        return exc
    await nc.close()
    return None
