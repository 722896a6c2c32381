"""The scheduler's declaration, wired on FastStream's TestNatsBroker."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.bus.emit import Emitter, UndeclaredEvent
from dockyard.contract.events import (
    EVENT_TYPES,
    AfterSwitchFailed,
    AfterSwitchSucceeded,
    BuildFailed,
    DeployFailed,
    DestroyUnrouted,
    Event,
    Fact,
    HookFailed,
    ReleaseFailed,
    ReleaseSucceeded,
    RolloutRolledBack,
    RolloutWatched,
    StartFailed,
    TrafficFailed,
    TrafficScaled,
)
from dockyard.scheduler.app import SERVICE
from dockyard.scheduler.handlers import Scheduler
from tests import fakes
from tests.contract.samples import sample_event
from tests.fakes import delivered_on_test_broker, undeclared_events

ROUTED: dict[type[Event[Any]], str] = {
    ReleaseSucceeded: "on_release_succeeded",
    BuildFailed: "on_pre_switch_failure",
    ReleaseFailed: "on_pre_switch_failure",
    StartFailed: "on_pre_switch_failure",
    HookFailed: "on_pre_switch_failure",
    TrafficFailed: "on_pre_switch_failure",
    RolloutRolledBack: "on_pre_switch_failure",
    RolloutWatched: "on_rollout_watched",
    AfterSwitchSucceeded: "on_after_switch_succeeded",
    AfterSwitchFailed: "on_after_switch_failed",
    DeployFailed: "on_deploy_failed",
    TrafficScaled: "on_traffic_scaled",
    DestroyUnrouted: "on_destroy_unrouted",
}


async def test_each_event_reaches_its_handler_as_its_type() -> None:
    events = [sample_event(cls) for cls in ROUTED]
    calls = await delivered_on_test_broker(SERVICE, Scheduler, events)
    assert calls == [(ROUTED[type(event)], event) for event in events]
    assert all(type(got) is type(sent) for (_, got), sent in zip(calls, events, strict=True))


async def test_no_other_event_reaches_the_scheduler() -> None:
    others = [sample_event(cls) for cls in EVENT_TYPES if cls not in ROUTED]
    assert await delivered_on_test_broker(SERVICE, Scheduler, others) == []


def test_publishing_an_undeclared_event_type_is_refused() -> None:
    emitter = Emitter(fakes.offline_broker(SERVICE.name), SERVICE.name,
                      SERVICE.publishes)
    for cls in undeclared_events(SERVICE):
        with pytest.raises(UndeclaredEvent, match=cls.__name__):
            emitter.stamp(Fact.of(cls, sample_event(cls).data), app="shop", deployment_id="d",
                          release=1)
    for cls in SERVICE.publishes:
        emitter.stamp(Fact.of(cls, sample_event(cls).data), app="shop", deployment_id="d",
                      release=1)
