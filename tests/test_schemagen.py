"""The generated JSON Schemas and AsyncAPI document are current and describe real payloads."""

from __future__ import annotations

import json

import jsonschema

from dockyard import schemagen
from dockyard.contract import codec
from dockyard.contract.events import (
    EVENT_TYPES,
    BuildFailed,
    Fact,
    FailureData,
    HookSucceeded,
    schema_uri,
    stamp,
    type_of,
)


def test_generated_files_are_not_stale() -> None:
    stale = [str(p) for p, text in schemagen.rendered().items()
             if not p.exists() or p.read_text() != text]
    assert stale == [], "run `python -m dockyard.schemagen` and commit the result"


def test_no_schema_file_is_left_from_a_type_that_is_gone() -> None:
    expected = {p.name for p in schemagen.rendered() if p.parent == schemagen.JSON_DIR}
    assert {p.name for p in schemagen.JSON_DIR.glob("*.json")} == expected


def test_every_event_type_has_a_schema_file_whose_id_is_its_dataschema() -> None:
    for cls in EVENT_TYPES:
        schema = json.loads((schemagen.JSON_DIR / f"{type_of(cls)}.json").read_text())
        assert schema["$id"] == schema_uri(type_of(cls))


def test_a_real_payload_validates_and_a_broken_one_does_not() -> None:
    event = stamp(Fact.of(BuildFailed, FailureData(status="build-error", reason="no Dockerfile")),
                  source="dockyard/builder", app="shop", deployment_id="d1" * 16, release=2)
    schema = json.loads((schemagen.JSON_DIR / "dockyard.build.failed.json").read_text())
    jsonschema.validate(json.loads(codec.encode(event)), schema)
    broken = json.loads(codec.encode(event))
    broken["data"]["status"] = "exploded"
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError as exc:
        assert "exploded" in str(exc)
    else:
        raise AssertionError("an unknown status validated")


def test_asyncapi_names_the_switch_subject_and_who_sends_it() -> None:
    doc = json.loads(schemagen.ASYNCAPI.read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "dockyard.evt.{app}.hook.succeeded" in addresses
    assert "dockyard.cmd.deploy" in addresses
    assert "dockyard.log.{deployment_id}" in addresses
    assert HookSucceeded.__name__ in {
        m.get("title") for m in doc["components"]["messages"].values()}
    senders = {op.split("_sends_")[0] for op in doc["operations"] if "_sends_hook_succeeded" in op}
    assert senders == {"hook-runner"}
    assert "router_receives_hook_succeeded" in doc["operations"]
