"""Deploy requests of one app wait in arrival order, a bounded number of them; only the head
may take the lock."""

from __future__ import annotations

from datetime import datetime

from dockyard.contract.state import Queue, QueueEntry


def enqueue(queue: Queue, deployment_id: str, requested_at: datetime,
            limit: int | None = None) -> Queue:
    """The queue with the deployment added at its place by arrival time (no-op if present, or
    if `limit` deployments already wait: see `refused`)."""
    if any(e.deployment_id == deployment_id for e in queue.entries):
        return queue
    if limit is not None and len(queue.entries) >= limit:
        return queue
    entries = [*queue.entries, QueueEntry(deployment_id=deployment_id, requested_at=requested_at)]
    entries.sort(key=lambda e: e.requested_at)
    return Queue(entries=entries)


def refused(queue: Queue, deployment_id: str) -> bool:
    """Whether enqueue left the deployment out (the queue was full)."""
    return position(queue, deployment_id) is None


def remove(queue: Queue, deployment_id: str) -> Queue:
    """The queue without the deployment."""
    return Queue(entries=[e for e in queue.entries if e.deployment_id != deployment_id])


def head(queue: Queue) -> str | None:
    """The deployment whose turn it is."""
    return queue.entries[0].deployment_id if queue.entries else None


def position(queue: Queue, deployment_id: str) -> int | None:
    """1-based place of a deployment in the queue."""
    for i, entry in enumerate(queue.entries, start=1):
        if entry.deployment_id == deployment_id:
            return i
    return None
