"""The watchdog's decisions, as plain values: which phase an event makes due, its deadline, and
what a deploy past it amounts to.

A phase's deadline counts from the event that makes it due (not from when its owner starts it),
so a phase whose service is down still ends: its commands' timeouts plus the kill grace each,
health timeouts, the drain, and a margin for the service's own work.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dockyard.bus.logs import REASON_BYTES, cut
from dockyard.contract.events import (
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildFailed,
    BuildSucceeded,
    DeployAborted,
    DeployFailed,
    DeploySucceeded,
    Event,
    Fact,
    FailureData,
    HookFailed,
    HookSucceeded,
    ReleaseFailed,
    ReleaseSucceeded,
    RolloutRolledBack,
    StartFailed,
    StartSucceeded,
    TrafficFailed,
    TrafficSwitched,
)
from dockyard.contract.plan import Command, Plan
from dockyard.contract.state import InFlight, TimedOut

# How often the watchdog looks at the deploys in flight (and renews their locks).
EVERY = 5.0

# The phase each event makes due, in the order a deploy goes through them, and who owns it.
PHASES: dict[type[Event[Any]], str] = {
    BuildSucceeded: "release",
    ReleaseSucceeded: "start",
    StartSucceeded: "postdeploy",
    HookSucceeded: "switch",
    TrafficSwitched: "after-switch",
    AfterSwitchSucceeded: "end",
    BuildFailed: "abort",
    ReleaseFailed: "abort",
    StartFailed: "abort",
    HookFailed: "abort",
    TrafficFailed: "abort",
    AfterSwitchFailed: "abort",
    RolloutRolledBack: "abort",
    DeployAborted: "on-failure",
}
ORDER = ("release", "start", "postdeploy", "switch", "after-switch", "end", "abort",
         "on-failure")
OWNER = {"release": "hook-runner (predeploy and release)", "start": "scheduler",
         "postdeploy": "hook-runner", "switch": "router", "after-switch": "hook-runner",
         "end": "scheduler", "abort": "scheduler", "on-failure": "hook-runner"}
ENDS = (DeployFailed, DeploySucceeded)


def _commands(commands: list[Command], grace: float) -> float:
    """Every command of a phase at its timeout, each then killed after the grace."""
    return sum(c.timeout + grace for c in commands)


def budget(plan: Plan | None, phase: str, *, grace: float, margin: float,
           drain: float | None = None) -> float:
    """Seconds a phase may take: what its plan allows it, plus the margin."""
    if plan is None:
        return margin
    if phase == "release":
        return _commands(plan.predeploy, grace) + _commands(plan.release, grace) + margin
    if phase == "start":
        # Web instances are waited for one after another, each up to the health timeout.
        webs = sum(p.scale for p in plan.processes if p.name == "web")
        return webs * plan.health.timeout + margin
    if phase == "postdeploy":
        return _commands(plan.postdeploy, grace) + margin
    if phase == "after-switch":
        return _commands(plan.after_switch, grace) + margin
    if phase == "abort":
        # New instances stop (a grace each); after a failed after-switch the old ones drain.
        instances = sum(p.scale for p in plan.processes)
        return (plan.drain if drain is None else drain) + 2 * instances * grace + margin
    if phase == "on-failure":
        return _commands(plan.on_failure, grace) + margin
    if phase == "end" and plan.rollout is not None:
        # The watch window: the router says how it went, then the scheduler ends the deploy.
        return plan.rollout.watch + margin
    if phase == "switch" and plan.rollout is not None:
        # A canary: every step held, then the switch.
        return len(plan.rollout.steps) * (plan.rollout.hold + margin) + margin
    return margin  # switch, end: one proxy load, one event


def deadline(plan: Plan | None, phase: str, started_at: datetime, *, grace: float,
             margin: float, drain: float | None = None) -> datetime:
    """When a phase that became due at `started_at` is late."""
    return started_at + timedelta(seconds=budget(plan, phase, grace=grace, margin=margin,
                                                 drain=drain))


def advance(current: InFlight | None, event: Event[Any], now: datetime, *, grace: float,
            margin: float, drain: float | None = None) -> InFlight | None:
    """The in-flight record once `event` is seen: its phase made due, never going back (a
    redelivered earlier event changes nothing), never another deployment's record."""
    phase = PHASES.get(type(event))
    if phase is None:
        return current
    if current is not None:
        if current.deployment_id != event.deployment_id:
            return current
        if ORDER.index(phase) <= ORDER.index(current.phase):
            return current
    data = event.data
    spec = getattr(data, "spec", None) or (current.spec if current else None)
    failure = data if isinstance(data, FailureData) else (current.failure if current else None)
    plan = spec.plan if spec is not None else None
    return InFlight(app=event.subject, deployment_id=event.deployment_id, release=event.release,
                    phase=phase, since=now, spec=spec, failure=failure,
                    deadline=deadline(plan, phase, now, grace=grace, margin=margin, drain=drain))


def late(record: InFlight, now: datetime) -> bool:
    """Whether the record's phase passed its deadline."""
    return now >= record.deadline


def timed_out(record: InFlight, *, lost_to: str | None = None) -> TimedOut:
    """The verdict on a deploy past its phase's deadline (or whose lock another deploy took)."""
    seconds = (record.deadline - record.since).total_seconds()
    if lost_to is not None:
        why = (f"the {record.phase} phase lost the lock of {record.app} to deployment {lost_to} "
               "(its lease lapsed)")
    else:
        why = (f"the {record.phase} phase ({OWNER.get(record.phase, 'unknown')}) passed its "
               f"deadline of {seconds:g}s (due since {record.since:%H:%M:%S} UTC)")
    if record.phase == "end" or record.phase == "after-switch":
        why += f"; traffic stays on release {record.release}"
    if record.failure is not None:
        why += f", after {record.failure.status}: {record.failure.reason}"
    return TimedOut(app=record.app, deployment_id=record.deployment_id, release=record.release,
                    phase=record.phase, reason=cut(why, REASON_BYTES))


def failed(verdict: TimedOut, record: InFlight) -> Fact[FailureData]:
    """The deploy's end: `timeout`, naming the phase, with the spec for on-failure and cleanup."""
    return Fact.of(DeployFailed, FailureData(status="timeout", reason=verdict.reason,
                                             spec=record.spec))
