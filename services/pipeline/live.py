"""Read the live-release and pending records the router keeps in the KV `state` bucket."""

from __future__ import annotations

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from dockyard.schemas.state import LiveRelease, live_key


async def live_release(state: KeyValue, app: str) -> LiveRelease | None:
    """The app's live release record, if it has one."""
    try:
        entry = await state.get(live_key(app))
    except KeyNotFoundError:
        return None
    if not entry.value or entry.operation in ("DEL", "PURGE"):
        return None
    return msgspec.json.decode(entry.value, type=LiveRelease)
