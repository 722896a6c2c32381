"""Retry schedule and delivery state transitions, as plain values."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard.contract.sinks import SinkStatus
from dockyard.contract.state import AttemptResult, DeliveryState
from dockyard.notifier.delivery import (
    after_attempt,
    backoff_delay,
    is_due,
    redelivery_delay,
    refused,
    retry_schedule,
    state_key,
    status_after,
)
from dockyard.state.deliveries import key_part

OK = AttemptResult(status_code=204)
FAIL = AttemptResult(status_code=503)
DOWN = AttemptResult(error="ConnectError: refused")


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_delay(20, 2.0) == 600.0
    assert backoff_delay(3, 1.0, cap=3.0) == 3.0


def test_schedule_has_one_wait_between_each_attempt() -> None:
    assert retry_schedule(5, 2.0) == [2.0, 4.0, 8.0, 16.0]
    assert retry_schedule(1, 2.0) == []


def test_only_2xx_is_accepted() -> None:
    assert OK.ok and AttemptResult(status_code=200).ok
    assert not AttemptResult(status_code=301).ok and not FAIL.ok and not DOWN.ok
    assert FAIL.describe() == "HTTP 503" and DOWN.describe() == "ConnectError: refused"


def test_success_delivers() -> None:
    state = after_attempt(DeliveryState(), OK, max_attempts=5, backoff=2.0, now=100.0)
    assert state == DeliveryState(attempts=1, status="delivered", last=OK)


def test_failure_with_attempts_left_waits_for_the_backoff() -> None:
    first = after_attempt(DeliveryState(), FAIL, max_attempts=3, backoff=2.0, now=100.0)
    assert first == DeliveryState(attempts=1, status="pending", next_at=102.0, last=FAIL)
    second = after_attempt(first, DOWN, max_attempts=3, backoff=2.0, now=102.0)
    assert second == DeliveryState(attempts=2, status="pending", next_at=106.0, last=DOWN)


def test_last_attempt_failing_gives_up() -> None:
    state = DeliveryState(attempts=1, status="pending", next_at=102.0, last=FAIL)
    assert after_attempt(state, FAIL, max_attempts=2, backoff=2.0, now=103.0) == \
        DeliveryState(attempts=2, status="failed", last=FAIL)
    assert after_attempt(DeliveryState(), FAIL, max_attempts=1, backoff=2.0, now=0.0).status == \
        "failed"


def test_due_only_when_pending_and_its_time_came() -> None:
    assert is_due(DeliveryState(), 0.0)
    assert not is_due(DeliveryState(next_at=10.0), 9.9)
    assert is_due(DeliveryState(next_at=10.0), 10.0)
    assert not is_due(DeliveryState(status="delivered"), 99.0)
    assert not is_due(DeliveryState(status="failed"), 99.0)


def test_redelivery_comes_at_the_earliest_pending_retry() -> None:
    states = [DeliveryState(status="delivered"), DeliveryState(next_at=108.0),
              DeliveryState(next_at=102.5), DeliveryState(status="failed")]
    assert redelivery_delay(states, 100.0) == 2.5
    assert redelivery_delay([DeliveryState(status="delivered")], 100.0) is None
    # Overdue: come back (almost) at once rather than with a zero or negative delay.
    assert redelivery_delay([DeliveryState(next_at=90.0)], 100.0) == 0.05


def test_state_keys_are_valid_and_injective() -> None:
    assert state_key("d1:deploy.queued", "team-hook") == "notify.d1=3adeploy=2equeued.team-hook"
    assert key_part("a:b") != key_part("a_b") != key_part("a=3ab")
    assert key_part("é") == "=c3=a9"


def test_an_unusable_sink_fails_at_once() -> None:
    bad = AttemptResult(error="the sink cannot be used: secret: ...")
    assert refused(DeliveryState(), bad) == DeliveryState(attempts=1, status="failed", last=bad)


T1 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 3, 9, 5, tzinfo=UTC)


def test_sink_status_counts_failures_until_a_delivery() -> None:
    pending = DeliveryState(attempts=1, status="pending", next_at=5, last=FAIL)
    once = status_after(SinkStatus(), pending, T1)
    assert once == SinkStatus(failures=1, last_error="HTTP 503", last_failure_at=T1)
    gave_up = DeliveryState(attempts=2, status="failed", last=DOWN)
    twice = status_after(once, gave_up, T2)
    assert twice == SinkStatus(failures=2, given_up=1, last_error="ConnectError: refused",
                               last_failure_at=T2)
    delivered = DeliveryState(attempts=1, status="delivered", last=OK)
    assert status_after(twice, delivered, T2) == SinkStatus(last_delivered_at=T2)
    again = status_after(SinkStatus(last_delivered_at=T1), pending, T2)
    assert again == SinkStatus(failures=1, last_error="HTTP 503", last_failure_at=T2,
                               last_delivered_at=T1)
