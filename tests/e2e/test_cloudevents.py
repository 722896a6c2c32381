"""Every event a real deploy publishes is a structured-mode CloudEvent, read by the SDK's strict
reader, valid against its JSON Schema, with `content-type: application/cloudevents+json`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from cloudevents.core.formats.json import JSONFormat
from nats.js.api import ConsumerConfig, DeliverPolicy

from dockyard.bus.topology import STREAM_FEED
from dockyard.client import Followers
from dockyard.contract import subjects
from dockyard.contract.events import DeployFailed, DeploySucceeded, schema_uri
from tests.e2e.apps import make_app
from tests.e2e.conftest import Running

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"


async def test_every_event_of_a_deploy_is_a_valid_cloudevent(running: Running,
                                                             tmp_path: Path) -> None:
    app = running.app_name("ce")
    ok = await running.client.deploy(app, make_app(tmp_path / "v1", running.runtime, "v1",
                                                   release="echo migrating"),
                                     Followers(), wait=240)
    assert isinstance(ok, DeploySucceeded), ok
    failed = await running.client.deploy(app, make_app(tmp_path / "v2", running.runtime, "v2",
                                                       postdeploy="exit 3"),
                                         Followers(), wait=240)
    assert isinstance(failed, DeployFailed), failed

    sub = await running.client.js.subscribe(
        subjects.app_events(app), ordered_consumer=True, stream=STREAM_FEED,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    seen: list[str] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                break
            assert (msg.headers or {}).get("content-type") == "application/cloudevents+json"
            event = JSONFormat().read(None, msg.data)  # raises on any violation of the spec
            top = json.loads(msg.data)
            assert event.get_subject() == app
            assert event.get_dataschema() == schema_uri(event.get_type())
            assert msg.subject == subjects.event(app, *event.get_type().split(".")[1:])
            schema = json.loads((SCHEMAS / f"{event.get_type()}.json").read_text())
            jsonschema.validate(top, schema)
            seen.append(event.get_type())
    finally:
        await sub.unsubscribe()
    # Both deploys from queue to end, the gate, the switch and the failure path are all there.
    for expected in ("dockyard.deploy.queued", "dockyard.build.started", "dockyard.hook.succeeded",
                     "dockyard.traffic.switched", "dockyard.command.finished",
                     "dockyard.hook.failed", "dockyard.deploy.aborted", "dockyard.deploy.failed",
                     "dockyard.deploy.succeeded"):
        assert expected in seen, (expected, seen)
