"""Every door, found by its interface: open a service's door set, list what it grants."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from nats.js import JetStreamContext

from dockyard.state import (
    builds,
    cancels,
    config,
    deliveries,
    formation,
    hooks,
    inflight,
    locks,
    maintenance,
    placements,
    queue,
    releases,
    rollouts,
    routes,
    sinks,
    sources,
    steps,
)
from dockyard.state.door import Door, Grant

DOORS: tuple[Door[Any], ...] = (
    locks.DOOR, cancels.WRITER, cancels.READER, steps.OWN, steps.VERDICTS, config.STORE,
    config.READER, routes.WRITER, routes.READER, queue.DOOR, releases.DOOR, hooks.STORE,
    hooks.READER, sinks.STORE, sinks.READER, deliveries.DOOR, deliveries.STATUS_READER,
    sources.READER, sources.UPLOADS, builds.STORE, builds.READER, placements.WRITER,
    placements.READER, maintenance.STORE, maintenance.READER, maintenance.FORGETTER,
    inflight.WRITER, inflight.TIMEOUTS, formation.WRITER, formation.READER, hooks.KEEPER,
    sinks.FORGETTER, sources.KEEPER, builds.KEEPER, config.FORGETTER, rollouts.BOARD,
    rollouts.CONTROL,
)
_BY_INTERFACE: dict[type[Any], Door[Any]] = {door.interface: door for door in DOORS}

S = TypeVar("S")


class UnknownDoor(TypeError):
    """A door set field whose type is not a known door interface."""


def doors_of(door_set: type[Any]) -> list[tuple[str, Door[Any]]]:
    """The (field, door) pairs of a door set dataclass."""
    hints = typing.get_type_hints(door_set)
    found = []
    for f in dataclasses.fields(door_set):
        door = _BY_INTERFACE.get(hints[f.name])
        if door is None:
            raise UnknownDoor(f"{door_set.__name__}.{f.name}: {hints[f.name]!r} is not a door")
        found.append((f.name, door))
    return found


def grants_of(door_set: type[Any]) -> list[Grant]:
    """Every grant a door set needs."""
    return [g for _, door in doors_of(door_set) for g in door.grants]


async def open_doors(door_set: type[S], js: JetStreamContext, service: str) -> S:
    """Open every door of a door set on the bus, as `service`."""
    opened = {name: await door.open(js, service) for name, door in doors_of(door_set)}
    return door_set(**opened)
