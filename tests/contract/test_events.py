"""Events round-trip, and old payloads (before fields were added) still decode."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from dockyard.contract import codec
from dockyard.contract.events import (
    COMMAND_TYPES,
    EVENT_TYPES,
    FAILURE_TYPES,
    AfterSwitchSucceeded,
    DeployFailed,
    DeploySpec,
    DeploySucceeded,
    EndData,
    Fact,
    FailureData,
    HookSucceeded,
    InstanceRef,
    InstancesData,
    SpecData,
    event_id,
    schema_uri,
    stamp,
    type_of,
)
from dockyard.contract.plan import Command, Plan
from tests.events import data_type


def spec() -> DeploySpec:
    plan = Plan(postdeploy=[Command(label="warm", command="echo hi", timeout=60)])
    return DeploySpec(runtime="process", build_id="v1-abc", artifact="/x", plan=plan)


def test_round_trip_by_tag() -> None:
    event = stamp(Fact.of(HookSucceeded, InstancesData(
        spec=spec(), instances=[InstanceRef(id="i1", process="web", release=3, port=5000)])),
        source="dockyard/hook-runner", app="shop", deployment_id="d", release=3)
    again = codec.decode_event(codec.encode(event))
    assert again == event
    assert isinstance(again, HookSucceeded) and again.data.instances[0].port == 5000
    assert event.id == event_id("d", "dockyard.hook.succeeded")
    assert event.dataschema == schema_uri("dockyard.hook.succeeded")
    assert event.nats_subject() == "dockyard.evt.shop.hook.succeeded"


def test_the_envelope_is_cloudevents_shaped() -> None:
    event = stamp(Fact.of(DeploySucceeded, EndData()), source="dockyard/scheduler", app="shop",
                  deployment_id="d", release=2)
    top = msgspec.json.decode(codec.encode(event))
    assert top["specversion"] == "1.0" and top["type"] == "dockyard.deploy.succeeded"
    assert top["subject"] == "shop" and top["deploymentid"] == "d" and top["release"] == 2
    assert "deployment_id" not in top
    assert top["data"] == {"status": "succeeded"}
    assert top["datacontenttype"] == "application/json"


def test_an_old_payload_without_later_fields_decodes() -> None:
    # Only the fields every v1 payload has: no time, no release, and a failure without the
    # `spec`, `exit_code`, `tail` and `command` added later.
    old = (b'{"type":"dockyard.deploy.failed","id":"d:deploy.failed","source":"x",'
           b'"subject":"shop","dataschema":"urn:dockyard:schema:v1:dockyard.deploy.failed",'
           b'"deploymentid":"d","data":{"status":"hook-error","reason":"postdeploy failed"}}')
    event = codec.decode_event(old)
    assert isinstance(event, DeployFailed)
    assert event.data.spec is None and event.data.tail == [] and event.release == 0
    assert event.data.exit_code is None and event.data.command is None
    assert event.specversion == "1.0"


def test_an_unknown_status_is_refused() -> None:
    bad = (b'{"type":"dockyard.deploy.failed","id":"x","source":"x","subject":"shop",'
           b'"dataschema":"s","deploymentid":"d","data":{"status":"exploded","reason":"r"}}')
    with pytest.raises(msgspec.ValidationError, match="status"):
        codec.decode_event(bad)


def test_event_ids_are_deterministic_and_distinct() -> None:
    assert event_id("d", "dockyard.hook.succeeded") == event_id("d", "dockyard.hook.succeeded")
    assert event_id("d", "dockyard.command.finished", "postdeploy", 1) != event_id(
        "d", "dockyard.command.finished", "postdeploy", 2)


def test_every_event_type_has_a_distinct_subject_pair() -> None:
    pairs = [(t.topic, t.outcome) for t in EVENT_TYPES]
    assert len(pairs) == len(set(pairs))


def test_the_after_switch_subject_and_type_are_spelt_like_the_phase() -> None:
    event = stamp(Fact.of(AfterSwitchSucceeded, SpecData(spec=spec())),
                  source="dockyard/hook-runner", app="shop", deployment_id="d", release=1)
    assert event.type == "dockyard.after_switch.succeeded"
    assert event.nats_subject() == "dockyard.evt.shop.after_switch.succeeded"


def test_failures_are_the_events_whose_data_is_a_failure() -> None:
    for cls in EVENT_TYPES:
        assert (cls in FAILURE_TYPES) is (data_type(cls) is FailureData), cls


@pytest.mark.parametrize("cls", EVENT_TYPES + COMMAND_TYPES, ids=lambda c: c.__name__)
def test_type_of_is_the_tag_the_wire_carries(cls: type[Any]) -> None:
    assert type_of(cls) == msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
    assert type_of(cls).startswith("dockyard.")
