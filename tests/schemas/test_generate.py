"""The generated JSON Schemas and AsyncAPI document are current and describe real payloads."""

from __future__ import annotations

import json

import jsonschema

from dockyard.schemas import codec, generate
from dockyard.schemas.events import EVENT_TYPES, BuildFailed, HookSucceeded, type_of


def test_generated_files_are_not_stale() -> None:
    stale = [str(p) for p, text in generate.rendered().items()
             if not p.exists() or p.read_text() != text]
    assert stale == [], "run `python -m dockyard.schemas.generate` and commit the result"


def test_every_event_type_has_a_schema_file() -> None:
    for cls in EVENT_TYPES:
        assert (generate.JSON_DIR / f"{type_of(cls)}.json").exists()


def test_a_real_payload_validates_and_a_broken_one_does_not() -> None:
    event = BuildFailed(id="d1:build.failed", source="dockyard/builder", subject="shop",
                        deployment_id="d1", release=2, status="build-error", reason="no Dockerfile")
    schema = json.loads((generate.JSON_DIR / "dockyard.build.failed.json").read_text())
    jsonschema.validate(json.loads(codec.encode(event)), schema)
    broken = json.loads(codec.encode(event))
    broken["status"] = "exploded"
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError as exc:
        assert "exploded" in str(exc)
    else:
        raise AssertionError("an unknown status validated")


def test_asyncapi_names_the_switch_subject() -> None:
    doc = json.loads(generate.ASYNCAPI.read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "dockyard.evt.{app}.hook.succeeded" in addresses
    assert "dockyard.cmd.deploy" in addresses
    assert "dockyard.log.{deployment_id}" in addresses
    assert HookSucceeded.__name__ in {m.get("title") for m in doc["components"]["messages"].values()}
