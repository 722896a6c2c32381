"""Release numbers: v1, v2, ... one per deployment that gets its turn, allocated once."""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.pipeline import runs
from dockyard.schemas.state import release_counter_key


async def allocate(state: KeyValue, runs_kv: KeyValue, app: str, deployment_id: str) -> int:
    """The deployment's release number (the same one again on redelivery)."""
    known = await runs.done(runs_kv, deployment_id, "release-number")
    if known is not None:
        return int(known)
    key = release_counter_key(app)
    while True:
        try:
            entry = await state.get(key)
            last, revision = int(entry.value or b"0"), entry.revision
        except KeyNotFoundError:
            last, revision = 0, 0
        number = last + 1
        try:
            if revision:
                await state.update(key, str(number).encode(), last=revision)
            else:
                await state.create(key, str(number).encode())
        except KeyWrongLastSequenceError:
            continue
        await runs.record(runs_kv, deployment_id, "release-number", str(number).encode())
        return number
