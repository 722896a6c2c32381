"""What a door declares about the NATS state it touches, so permissions follow from the code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from nats.js import JetStreamContext

# "forget": remove keys (a destroyed app's) without reading any value: the stream's info (which
# keys exist) and publishing to the keys, but no direct get and no consumer.
Access = Literal["read", "write", "forget"]


@dataclass(frozen=True)
class Grant:
    """Access to one KV bucket or object store, optionally to keys under one prefix only."""

    kind: Literal["kv", "obj"]
    bucket: str
    access: Access
    # Key prefix tokens ("hook-runner") or a one-token wildcard ("*": top-level keys only).
    keys: str = ">"

    def describe(self) -> str:
        """`read kv dockyard_config keys *`, for docs and test messages."""
        return f"{self.access} {self.kind} {self.bucket} keys {self.keys}"


P = TypeVar("P")


@dataclass(frozen=True)
class Door(Generic[P]):
    """One piece of state: its interface, how its NATS implementation is opened, its grants."""

    # A Protocol class (mypy would refuse a Protocol where `type[P]` is asked for).
    interface: Any
    open: Callable[[JetStreamContext, str], Awaitable[P]]
    grants: tuple[Grant, ...]
