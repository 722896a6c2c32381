"""App config vars in the `config` bucket: values stay here, events carry only the version.

Each app's versions are numbered 1, 2, 3... on their own. The head key `<app>` holds the latest
version with its values (the one compare-and-set point); `<app>.v<N>` keeps each version's values
so a hook reads exactly the config its release was made with.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from dockyard.contract import subjects
from dockyard.pipeline.config import check_values
from dockyard.state import kv
from dockyard.state.door import Door, Grant


class Versioned(msgspec.Struct, frozen=True, kw_only=True):
    """One version of an app's config."""

    version: int = 0
    values: dict[str, str] = {}


class UnknownVersion(LookupError):
    """A config version an app never had."""

    def __init__(self, app: str, version: int) -> None:
        super().__init__(f"{app} has no config version {version}")
        self.app = app
        self.version = version


class ConfigReader(Protocol):
    """Reads an app's config."""

    async def current(self, app: str) -> Versioned:
        """The latest version (0 and no values when never set)."""

    async def at_version(self, app: str, version: int) -> dict[str, str]:
        """The values of exactly one version (what a release was made with)."""


class ConfigStore(ConfigReader, Protocol):
    """Reads and changes an app's config."""

    async def change(self, app: str, set_: dict[str, str], unset: list[str]) -> Versioned:
        """Apply a change atomically; the new version."""

    async def forget(self, app: str) -> int:
        """Remove every version of an app's config (the app is destroyed); how many keys."""


class ConfigForgetter(Protocol):
    """Forgets an app's config without reading it (the builder, destroying an app)."""

    async def forget(self, app: str) -> int:
        """Remove every version of an app's config; how many keys (the head and snapshots)."""


_decoder: msgspec.json.Decoder[Versioned] = msgspec.json.Decoder(Versioned)


def _head(raw: bytes | None) -> Versioned:
    return _decoder.decode(raw) if raw else Versioned()


def _snapshot(app: str, version: int) -> str:
    return f"{app}.v{version}"


def applied(head: Versioned, set_: dict[str, str], unset: list[str]) -> Versioned:
    """The next version: the head's values with the change applied (keys sorted);
    ConfigError if it breaks a name rule or a limit."""
    values = {**head.values, **set_}
    for name in unset:
        values.pop(name, None)
    return Versioned(version=head.version + 1, values=check_values(dict(sorted(values.items()))))


class NatsConfigStore:
    """ConfigStore on the `config` bucket."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue) -> None:
        self.js = js
        self.kv = bucket

    async def current(self, app: str) -> Versioned:
        """The latest version (0 and no values when never set)."""
        raw, _ = await kv.read(self.kv, app)
        return _head(raw)

    async def at_version(self, app: str, version: int) -> dict[str, str]:
        """The values of exactly one version."""
        if version == 0:
            return {}
        raw, _ = await kv.read(self.kv, _snapshot(app, version))
        if raw is not None:
            return _decoder.decode(raw).values
        head = await self.current(app)
        if head.version != version:
            raise UnknownVersion(app, version)
        # The writer stopped between the head and its snapshot: finish its work.
        await self.kv.put(_snapshot(app, version), msgspec.json.encode(head))
        return head.values

    async def change(self, app: str, set_: dict[str, str], unset: list[str]) -> Versioned:
        """Apply a change atomically (compare-and-set on the head); the new version."""
        changed: tuple[Versioned, Versioned] = await kv.change(
            self.kv, subjects.KV_CONFIG, app, _head, lambda head: applied(head, set_, unset),
            msgspec.json.encode)
        after = changed[1]
        await self.kv.put(_snapshot(app, after.version), msgspec.json.encode(after))
        return after

    async def forget(self, app: str) -> int:
        """Purge the head and every snapshot of an app; how many keys there were."""
        return len(await kv.purge(self.js, self.kv, subjects.KV_CONFIG, f"{app}.>", app))


async def open_config_store(js: JetStreamContext, service: str) -> ConfigStore:
    """The config, readable and writable."""
    del service
    return NatsConfigStore(js, await js.key_value(subjects.KV_CONFIG))


async def open_config_reader(js: JetStreamContext, service: str) -> ConfigReader:
    """The config, read-only."""
    return await open_config_store(js, service)


STORE = Door(ConfigStore, open_config_store, (Grant("kv", subjects.KV_CONFIG, "write"),))
async def open_config_forgetter(js: JetStreamContext, service: str) -> ConfigForgetter:
    """The config, forgettable only (its values are never read through this door)."""
    return await open_config_store(js, service)


FORGETTER = Door(ConfigForgetter, open_config_forgetter,
                 (Grant("kv", subjects.KV_CONFIG, "forget"),))
READER = Door(ConfigReader, open_config_reader, (Grant("kv", subjects.KV_CONFIG, "read"),))
