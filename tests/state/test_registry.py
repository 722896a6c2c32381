"""Door sets: each service's doors found by interface, their grants, opened on a real bus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dockyard.api.app import ApiDoors
from dockyard.builder.app import BuilderDoors
from dockyard.contract import subjects
from dockyard.hook_runner.app import HookRunnerDoors
from dockyard.notifier.app import NotifierDoors
from dockyard.router.app import RouterDoors
from dockyard.scheduler.app import SchedulerDoors
from dockyard.state import (
    builds,
    cancels,
    config,
    deliveries,
    formation,
    hooks,
    inflight,
    locks,
    maintenance,
    placements,
    queue,
    releases,
    rollouts,
    routes,
    sinks,
    sources,
    steps,
)
from dockyard.state.door import Grant
from dockyard.state.locks import AppLocks, NatsAppLocks
from dockyard.state.registry import DOORS, UnknownDoor, doors_of, grants_of
from tests.conftest import Bus


def test_each_services_door_set_is_its_declared_doors() -> None:
    assert doors_of(BuilderDoors) == [
        ("queue", queue.DOOR), ("locks", locks.DOOR), ("releases", releases.DOOR),
        ("steps", steps.OWN), ("cancels", cancels.WRITER), ("hooks", hooks.KEEPER),
        ("manifests", builds.KEEPER), ("sources", sources.KEEPER), ("routes", routes.READER),
        ("inflight", inflight.WRITER), ("config", config.FORGETTER), ("sinks", sinks.FORGETTER),
        ("maintenance", maintenance.FORGETTER)]
    shared = [("locks", locks.DOOR), ("cancels", cancels.READER), ("steps", steps.OWN),
              ("config", config.READER), ("routes", routes.READER)]
    assert doors_of(HookRunnerDoors) == [*shared, ("timeouts", inflight.TIMEOUTS)]
    assert doors_of(SchedulerDoors) == [*shared, ("placements", placements.WRITER),
                                        ("timeouts", inflight.TIMEOUTS),
                                        ("formation", formation.WRITER)]
    assert doors_of(RouterDoors) == [("routes", routes.WRITER), ("verdicts", steps.VERDICTS),
                                     ("placements", placements.READER),
                                     ("maintenance", maintenance.READER),
                                     ("timeouts", inflight.TIMEOUTS),
                                     ("rollouts", rollouts.BOARD)]
    assert doors_of(NotifierDoors) == [("sinks", sinks.READER), ("deliveries", deliveries.DOOR)]
    assert doors_of(ApiDoors) == [
        ("config", config.STORE), ("hooks", hooks.STORE), ("sinks", sinks.STORE),
        ("sink_status", deliveries.STATUS_READER), ("sources", sources.UPLOADS),
        ("manifests", builds.READER), ("routes", routes.READER),
        ("maintenance", maintenance.STORE), ("formation", formation.READER),
        ("rollouts", rollouts.CONTROL)]


def test_grants_follow_from_the_doors() -> None:
    assert grants_of(RouterDoors) == [Grant("kv", subjects.KV_ROUTES, "write"),
                                      Grant("kv", subjects.KV_STEPS, "read", keys="hook-runner"),
                                      Grant("kv", subjects.KV_PLACEMENTS, "read"),
                                      Grant("kv", subjects.KV_MAINTENANCE, "read"),
                                      # The watchdog's verdicts only, not the records in flight.
                                      Grant("kv", subjects.KV_INFLIGHT, "read",
                                            keys="timedout"),
                                      # Its rollouts' states; the operators' orders, read and
                                      # removed once acted on, never written.
                                      Grant("kv", subjects.KV_ROLLOUTS, "write", keys="state"),
                                      Grant("kv", subjects.KV_ROLLOUTS, "read", keys="order"),
                                      Grant("kv", subjects.KV_ROLLOUTS, "forget", keys="order")]
    assert grants_of(NotifierDoors) == [Grant("kv", subjects.KV_SINKS, "read"),
                                        Grant("kv", subjects.KV_DELIVERIES, "write")]
    # The api writes only what its HTTP operations change: config, hooks, sinks, uploads,
    # maintenance, orders to rollouts.
    assert {g for g in grants_of(ApiDoors) if g.access == "write"} == {
        Grant("kv", subjects.KV_CONFIG, "write"), Grant("kv", subjects.KV_HOOKS, "write"),
        Grant("kv", subjects.KV_SINKS, "write"), Grant("obj", subjects.OBJ_SOURCES, "write"),
        Grant("kv", subjects.KV_MAINTENANCE, "write"),
        Grant("kv", subjects.KV_ROLLOUTS, "write", keys="order")}
    builder = grants_of(BuilderDoors)
    # Step records are granted under the service's own key prefix only.
    assert Grant("kv", subjects.KV_STEPS, "write", keys="{service}") in builder
    # A destroy: the builder deletes the app's sources and forgets its config unread.
    assert Grant("obj", subjects.OBJ_SOURCES, "write") in builder
    assert Grant("kv", subjects.KV_CONFIG, "forget") in builder
    assert Grant("kv", subjects.KV_CONFIG, "read") not in builder
    assert Grant("kv", subjects.KV_CONFIG, "write") not in builder
    assert Grant("kv", subjects.KV_CONFIG, "read").describe() == (
        "read kv dockyard_config keys >")


def test_every_door_has_its_own_interface() -> None:
    assert len({door.interface for door in DOORS}) == len(DOORS)


@dataclass(frozen=True)
class Strange:
    locks: AppLocks
    clock: float


def test_an_unknown_door_type_is_an_error_naming_the_field() -> None:
    with pytest.raises(UnknownDoor, match=r"Strange\.clock: <class 'float'> is not a door"):
        doors_of(Strange)
    with pytest.raises(UnknownDoor):
        grants_of(Strange)


@pytest.mark.parametrize("door_set", [BuilderDoors, HookRunnerDoors, SchedulerDoors,
                                      RouterDoors, NotifierDoors, ApiDoors])
async def test_a_door_set_opens_on_the_bus(bus: Bus, door_set: type[Any]) -> None:
    opened = await bus.doors(door_set, "test")
    assert isinstance(opened, door_set)
    if hasattr(opened, "locks"):
        assert isinstance(opened.locks, NatsAppLocks)
