"""A deploy's own rollout, as the CLI's flags and the api's query give it: `5,25`, `60s`, `5m`,
off."""

from __future__ import annotations

from dockyard.contract.plan import RolloutError, RolloutOverride, checked_override
from dockyard.plan.durations import parse_duration


def rollout_from_flags(canary: str | None, hold: str | None, watch: str | None,
                       off: bool) -> RolloutOverride | None:
    """The override the flags ask for (None: none given); RolloutError naming the flag."""
    if canary is None and hold is None and watch is None and not off:
        return None
    try:
        steps = None if canary is None else [int(s) for s in canary.split(",") if s.strip()]
    except ValueError:
        raise RolloutError(f"canary: {canary!r} is not a list of percentages such as "
                           "5,25") from None
    try:
        held = None if hold is None else parse_duration(hold)
        watched = None if watch is None else parse_duration(watch, allow_zero=True)
    except ValueError as exc:
        raise RolloutError(f"hold or watch: {exc}") from None
    return checked_override(RolloutOverride(steps=steps, hold=held, watch=watched, off=off))
