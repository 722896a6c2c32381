"""Retry decisions: exponential backoff, bounded attempts, where one event-to-sink delivery is."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 2.0
MAX_DELAY = 600.0
# JetStream needs a positive delay to hold a message back; below this we just redeliver now.
MIN_DELAY = 0.05

DeliveryStatus = Literal["pending", "delivered", "failed"]


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one POST gave: an HTTP status, or an error when no response came."""

    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the sink accepted the event (any 2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300

    def describe(self) -> str:
        """A short reason for logs and NotificationFailed."""
        if self.error is not None:
            return self.error
        return f"HTTP {self.status_code}"


class DeliveryState(msgspec.Struct, frozen=True, kw_only=True):
    """Where delivering one event to one sink stands (kept in the runs bucket)."""

    attempts: int = 0
    status: DeliveryStatus = "pending"
    next_at: float = 0.0
    last: AttemptResult | None = None


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


def is_due(state: DeliveryState, now: float) -> bool:
    """Whether this delivery should be attempted now."""
    return state.status == "pending" and state.next_at <= now


def redelivery_delay(states: Iterable[DeliveryState], now: float) -> float | None:
    """When the message should come back: the earliest pending retry, or None when all finished."""
    waits = [max(s.next_at - now, MIN_DELAY) for s in states if s.status == "pending"]
    return min(waits) if waits else None


_KEY_SAFE = frozenset("-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def key_part(text: str) -> str:
    """One KV key token: other characters (`.`, `=` too) become `=xx` bytes, so it is injective."""
    return "".join(c if c in _KEY_SAFE else "".join(f"={b:02x}" for b in c.encode())
                   for c in text)


def state_key(event_id: str, sink: str) -> str:
    """Key of one (event, sink) delivery in the runs bucket."""
    return f"notify.{key_part(event_id)}.{key_part(sink)}"
