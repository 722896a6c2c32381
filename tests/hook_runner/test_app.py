"""The hook-runner's declaration, wired on FastStream's TestNatsBroker."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.bus.emit import Emitter, UndeclaredEvent
from dockyard.contract.events import (
    EVENT_TYPES,
    BuildSucceeded,
    DeployAborted,
    DeployFailed,
    Event,
    Fact,
    StartSucceeded,
    TrafficSwitched,
)
from dockyard.hook_runner.app import SERVICE
from dockyard.hook_runner.handlers import HookRunner
from tests import fakes
from tests.contract.samples import sample_event
from tests.fakes import delivered_on_test_broker, undeclared_events

ROUTED: dict[type[Event[Any]], str] = {
    BuildSucceeded: "on_build_succeeded",
    StartSucceeded: "on_start_succeeded",
    TrafficSwitched: "on_traffic_switched",
    DeployAborted: "on_deploy_aborted",
    DeployFailed: "on_deploy_failed",
}


async def test_each_trigger_reaches_its_phase_handler_as_its_type() -> None:
    triggers = [sample_event(cls) for cls in ROUTED]
    calls = await delivered_on_test_broker(SERVICE, HookRunner, triggers)
    assert calls == [(ROUTED[type(event)], event) for event in triggers]
    assert all(type(got) is type(sent) for (_, got), sent in zip(calls, triggers, strict=True))


async def test_no_other_event_reaches_the_hook_runner() -> None:
    others = [sample_event(cls) for cls in EVENT_TYPES if cls not in ROUTED]
    assert await delivered_on_test_broker(SERVICE, HookRunner, others) == []


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
