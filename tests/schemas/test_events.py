"""Events round-trip, and old payloads (before fields were added) still decode."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas import codec
from dockyard.schemas.events import (
    EVENT_TYPES,
    DeployFailed,
    DeploySpec,
    HookSucceeded,
    InstanceRef,
    event_id,
)
from dockyard.schemas.plan import Command, Plan


def spec() -> DeploySpec:
    plan = Plan(postdeploy=[Command(label="warm", command="echo hi", timeout=60)])
    return DeploySpec(runtime="process", build_id="v1-abc", artifact="/x", plan=plan)


def test_round_trip_by_tag() -> None:
    event = HookSucceeded(id="d:hook.succeeded", source="dockyard/hook-runner", subject="shop",
                          deployment_id="d", release=3, spec=spec(),
                          instances=[InstanceRef(id="i1", process="web", release=3, port=5000)])
    again = codec.decode_event(codec.encode(event))
    assert again == event
    assert event.nats_subject() == "dockyard.evt.shop.hook.succeeded"


def test_an_old_payload_without_later_fields_decodes() -> None:
    # Written before `spec` (failures), `build_artifact` (specs) and `command` existed.
    old = (b'{"type":"dockyard.deploy.failed","id":"d:deploy.failed","source":"x",'
           b'"subject":"shop","time":"2026-01-01T00:00:00Z","deployment_id":"d",'
           b'"status":"hook-error","reason":"postdeploy failed"}')
    event = codec.decode_event(old)
    assert isinstance(event, DeployFailed)
    assert event.spec is None and event.tail == [] and event.release == 0


def test_an_unknown_status_is_refused() -> None:
    bad = (b'{"type":"dockyard.deploy.failed","id":"x","source":"x","subject":"shop",'
           b'"deployment_id":"d","status":"exploded","reason":"r"}')
    with pytest.raises(msgspec.ValidationError, match="status"):
        codec.decode_event(bad)


def test_event_ids_are_deterministic_and_distinct() -> None:
    assert event_id("d", "dockyard.hook.succeeded") == event_id("d", "dockyard.hook.succeeded")
    assert event_id("d", "dockyard.command.finished", "postdeploy", 1) != event_id(
        "d", "dockyard.command.finished", "postdeploy", 2)


def test_every_event_type_has_a_distinct_subject_pair() -> None:
    pairs = [(t.phase, t.outcome) for t in EVENT_TYPES]
    assert len(pairs) == len(set(pairs))
