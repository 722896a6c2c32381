"""Retry decisions: exponential backoff, bounded attempts, where one event-to-sink delivery is."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from dockyard.contract.sinks import SinkStatus
from dockyard.contract.state import AttemptResult, DeliveryState
from dockyard.state.deliveries import key_part

DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 2.0
MAX_DELAY = 600.0
# JetStream needs a positive delay to hold a message back; below this we just redeliver now.
MIN_DELAY = 0.05

def backoff_delay(attempt: int, base: float, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after the `attempt`-th failed attempt: base, 2*base, 4*base... capped."""
    return float(min(base * 2 ** (attempt - 1), cap))


def retry_schedule(max_attempts: int, base: float, cap: float = MAX_DELAY) -> list[float]:
    """The waits between attempts 1..max_attempts (one fewer than attempts)."""
    return [backoff_delay(n, base, cap) for n in range(1, max_attempts)]


def after_attempt(state: DeliveryState, result: AttemptResult, *, max_attempts: int,
                  backoff: float, now: float) -> DeliveryState:
    """The state once one more attempt gave `result`."""
    attempts = state.attempts + 1
    if result.ok:
        return DeliveryState(attempts=attempts, status="delivered", last=result)
    if attempts >= max_attempts:
        return DeliveryState(attempts=attempts, status="failed", last=result)
    return DeliveryState(attempts=attempts, status="pending",
                         next_at=now + backoff_delay(attempts, backoff), last=result)


def refused(state: DeliveryState, result: AttemptResult) -> DeliveryState:
    """A delivery that cannot be made (its stored sink is invalid): failed at once, no retries."""
    return DeliveryState(attempts=state.attempts + 1, status="failed", last=result)


def status_after(status: SinkStatus, state: DeliveryState, at: datetime) -> SinkStatus:
    """The sink's status once one attempt left a delivery in `state` (a delivery resets it)."""
    assert state.last is not None, "only called after an attempt"
    if state.status == "delivered":
        return SinkStatus(last_delivered_at=at)
    return SinkStatus(failures=status.failures + 1,
                      given_up=status.given_up + (state.status == "failed"),
                      last_error=state.last.describe(), last_failure_at=at,
                      last_delivered_at=status.last_delivered_at)


def is_due(state: DeliveryState, now: float) -> bool:
    """Whether this delivery should be attempted now."""
    return state.status == "pending" and state.next_at <= now


def redelivery_delay(states: Iterable[DeliveryState], now: float) -> float | None:
    """When the message should come back: the earliest pending retry, or None when all finished."""
    waits = [max(s.next_at - now, MIN_DELAY) for s in states if s.status == "pending"]
    return min(waits) if waits else None


def state_key(event_id: str, sink: str) -> str:
    """Key of one (event, sink) delivery in the runs bucket."""
    return f"notify.{key_part(event_id)}.{key_part(sink)}"
