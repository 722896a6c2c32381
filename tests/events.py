"""Events as the services stamp them, for tests: the envelope given or defaulted,
the data by field."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

from dockyard.contract.events import Event, Fact, event_id, schema_uri, stamp, type_of

E = TypeVar("E", bound=Event[Any])


def data_type(cls: type[Event[Any]]) -> type[msgspec.Struct]:
    """The payload struct an event class carries under `data`."""
    for field in msgspec.inspect.type_info(cls).fields:  # type: ignore[attr-defined]
        if field.name == "data":
            found: type[msgspec.Struct] = field.type.cls
            return found
    raise TypeError(f"{cls.__name__} has no data")


def make(cls: type[E], *, app: str = "shop", deployment_id: str = "d1", release: int = 0,
         id: str | None = None, source: str = "test", time: datetime | None = None,
         id_parts: tuple[str | int, ...] = (), **data: Any) -> E:
    """An event of `cls` whose data is built from the keyword fields (its envelope stamped)."""
    kind = data_type(cls)
    # Through JSON, as on the bus: a phase given as a string arrives as a Phase.
    payload = msgspec.json.decode(msgspec.json.encode(kind(**data)), type=kind)
    event = stamp(Fact.of(cls, payload, *id_parts), source=source, app=app,
                  deployment_id=deployment_id, release=release, time=time)
    if id is not None:
        event = msgspec.structs.replace(event, id=id)
    assert isinstance(event, cls)
    return event


__all__ = ["data_type", "event_id", "make", "schema_uri", "type_of"]
