"""The deploy queue of one app, as plain values: arrival order, a bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dockyard.builder.queue import enqueue, head, position, refused, remove
from dockyard.contract.state import Queue, QueueEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ids(queue: Queue) -> list[str]:
    return [e.deployment_id for e in queue.entries]


def test_requests_wait_in_the_order_they_were_stored_not_delivered() -> None:
    queue = enqueue(Queue(), "b", at(2))
    queue = enqueue(queue, "c", at(3))
    queue = enqueue(queue, "a", at(1))
    assert ids(queue) == ["a", "b", "c"]
    assert head(queue) == "a"
    assert [position(queue, d) for d in ("a", "b", "c", "x")] == [1, 2, 3, None]


def test_enqueueing_again_changes_nothing() -> None:
    queue = enqueue(enqueue(Queue(), "a", at(1)), "b", at(2))
    assert enqueue(queue, "a", at(9)) is queue
    assert queue.entries[0] == QueueEntry(deployment_id="a", requested_at=at(1))


def test_removing_lets_the_next_one_be_head() -> None:
    queue = enqueue(enqueue(Queue(), "a", at(1)), "b", at(2))
    assert ids(remove(queue, "a")) == ["b"] and head(remove(queue, "a")) == "b"
    assert remove(queue, "x") == queue
    assert head(Queue()) is None
    assert head(remove(remove(queue, "a"), "b")) is None


def test_entries_wait_in_arrival_order_whatever_order_they_are_added() -> None:
    q = enqueue(Queue(), "b", T0 + timedelta(seconds=2))
    q = enqueue(q, "a", T0 + timedelta(seconds=1))
    q = enqueue(q, "c", T0 + timedelta(seconds=3))
    assert [e.deployment_id for e in q.entries] == ["a", "b", "c"]
    assert head(q) == "a" and position(q, "c") == 3
    assert enqueue(q, "a", T0 + timedelta(days=9)) == q  # a redelivery changes nothing
    assert [e.deployment_id for e in remove(q, "b").entries] == ["a", "c"]


def test_a_full_queue_takes_no_more() -> None:
    q = Queue()
    for i in range(3):
        q = enqueue(q, f"d{i}", T0 + timedelta(seconds=i), limit=3)
    full = enqueue(q, "late", T0 + timedelta(seconds=9), limit=3)
    assert full == q and refused(full, "late")
    # One already waiting is not refused when its request comes again.
    assert enqueue(q, "d1", T0, limit=3) == q and not refused(q, "d1")
    assert not refused(enqueue(remove(q, "d0"), "late", T0, limit=3), "late")
