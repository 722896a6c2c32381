"""App config vars in the KV `config` bucket: values stay there, events carry only the version."""

from __future__ import annotations

import re

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Every value reaches each one-off's environment (Linux refuses one string over 128 KiB) and
# the whole config is one KV value (under the bus's 1 MB payload).
MAX_VARS = 200
MAX_NAME_BYTES = 256
MAX_VALUE_BYTES = 32 * 1024
MAX_TOTAL_BYTES = 256 * 1024
# Names Dockyard sets itself in every container: a config var may not shadow them.
RESERVED = frozenset({"APP", "CONTAINER", "CONTAINER_VERSION", "PORT", "DOCKYARD_RELEASE",
                      "DOCKYARD_DEPLOYMENT_ID", "DOCKYARD_PHASE", "DOCKYARD_FAILURE_STATUS",
                      "DOCKYARD_FAILURE_REASON"})


class ConfigError(ValueError):
    """A config var name or assignment that cannot be used."""


class ConfigTooLarge(ConfigError):
    """A config past one of its limits."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size:,} (at most {limit:,})")
        self.size = size
        self.limit = limit


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`K=V` strings into a dict, with an error naming the bad one."""
    result: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{pair!r} is not KEY=VALUE")
        key, value = pair.split("=", 1)
        check_name(key)
        check_value(key, value)
        result[key] = value
    return check_values(result)


def check_name(key: str) -> str:
    """A valid, non-reserved config var name."""
    if not _NAME.fullmatch(key):
        raise ConfigError(f"{key!r} is not a valid variable name (letters, digits, _; "
                          "not starting with a digit)")
    if (size := len(key.encode())) > MAX_NAME_BYTES:
        raise ConfigTooLarge(f"the name {key[:40]}... in bytes", size, MAX_NAME_BYTES)
    if key in RESERVED:
        raise ConfigError(f"{key} is set by Dockyard itself and cannot be configured")
    return key


def check_value(key: str, value: str) -> str:
    """The value, if the environment can carry it."""
    if "\x00" in value:
        raise ConfigError(f"the value of {key} holds a NUL byte (an environment cannot carry it)")
    if (size := len(value.encode())) > MAX_VALUE_BYTES:
        raise ConfigTooLarge(f"the value of {key} in bytes", size, MAX_VALUE_BYTES)
    return value


def check_values(values: dict[str, str]) -> dict[str, str]:
    """A whole config, if every name and value is usable and it fits the limits."""
    if len(values) > MAX_VARS:
        raise ConfigTooLarge("the number of config vars", len(values), MAX_VARS)
    total = 0
    for key, value in values.items():
        check_name(key)
        check_value(key, value)
        total += len(key.encode()) + len(value.encode())
    if total > MAX_TOTAL_BYTES:
        raise ConfigTooLarge("the config's total size in bytes", total, MAX_TOTAL_BYTES)
    return values


async def current(kv: KeyValue, app: str) -> tuple[int, dict[str, str]]:
    """The latest config version (0 when never set) and its values."""
    try:
        entry = await kv.get(app)
    except KeyNotFoundError:
        return 0, {}
    if entry.value is None or entry.operation in ("DEL", "PURGE"):
        return entry.revision or 0, {}
    return entry.revision or 0, msgspec.json.decode(entry.value, type=dict[str, str])


async def at_version(kv: KeyValue, app: str, version: int) -> dict[str, str]:
    """The values of exactly one config version (what a release was made with)."""
    if version == 0:
        return {}
    entry = await kv.get(app, revision=version)
    if entry.value is None:
        return {}
    return msgspec.json.decode(entry.value, type=dict[str, str])


async def change(kv: KeyValue, app: str, set_: dict[str, str], unset: list[str]) -> int:
    """Apply a change atomically (optimistic concurrency); returns the new version."""
    for key in unset:
        check_name(key)
    for _ in range(20):
        version, values = await current(kv, app)
        values = {**values, **set_}
        for key in unset:
            values.pop(key, None)
        data = msgspec.json.encode(dict(sorted(values.items())))
        try:
            if version == 0:
                return int(await kv.create(app, data))
            return int(await kv.update(app, data, last=version))
        except KeyWrongLastSequenceError:
            continue
    raise ConfigError(f"config of {app} changed concurrently too often; try again")
