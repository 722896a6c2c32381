"""Every event type is a structured-mode CloudEvent the official SDK's strict reader accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat

from dockyard.contract import codec
from dockyard.contract.events import EVENT_TYPES, Event, FailureData, type_of
from tests.contract.samples import sample_event


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=type_of)
def test_the_sdk_reads_every_event_type(cls: type[Event[Any]]) -> None:
    event = sample_event(cls)
    raw = codec.encode(event)
    read = JSONFormat().read(None, raw)
    assert read.get_type() == type_of(cls)
    assert read.get_subject() == event.subject
    assert read.get_extension("deploymentid") == event.deployment_id
    assert read.get_dataschema() == event.dataschema
    assert read.get_datacontenttype() == "application/json"
    assert read.get_data() == json.loads(raw)["data"]


def test_no_attribute_but_data_is_an_object_or_array() -> None:
    for cls in EVENT_TYPES:
        top = json.loads(codec.encode(sample_event(cls)))
        nested = [k for k, v in top.items() if isinstance(v, dict | list) and k != "data"]
        assert nested == [], cls


def test_the_sdk_rejects_what_dockyard_used_to_publish() -> None:
    # The shape before the contract was a CloudEvent: underscores in an extension, no data.
    old = {"type": "dockyard.build.failed", "specversion": "1.0", "id": "x", "source": "s",
           "subject": "shop", "deployment_id": "d", "status": "build-error"}
    with pytest.raises(Exception, match="deployment_id"):
        JSONFormat().read(None, json.dumps(old).encode())


def test_a_failure_carries_its_reason_under_data() -> None:
    top = json.loads(codec.encode(sample_event(EVENT_TYPES[3])))
    assert isinstance(sample_event(EVENT_TYPES[3]).data, FailureData)
    assert top["data"]["status"] == "build-error"
