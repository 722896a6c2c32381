"""Generate schemas/: a JSON Schema per message, the AsyncAPI document of every subject, and
the HTTP API's OpenAPI document (as the api serves it at /openapi.json).

`python -m dockyard.schemagen` writes them; `--check` only reports stale files (the suite runs
the same check). Payload schemas come from the msgspec structs themselves. FastStream's own
AsyncAPI generator builds payload schemas with pydantic and cannot read msgspec structs, so the
document is assembled here, from the same service declarations that wire the services.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from dockyard.api.http import openapi_document
from dockyard.bus.service import SERVICES, On, declaration
from dockyard.contract import subjects
from dockyard.contract.events import (
    COMMAND_TYPES,
    CONTRACT_VERSION,
    EVENT_TYPES,
    AppLogLine,
    Event,
    LogLine,
    Message,
    schema_uri,
    type_of,
)

# The language-neutral contract lives at the repository's top, beside services/.
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
JSON_DIR = SCHEMAS / "json"
ASYNCAPI = SCHEMAS / "asyncapi.json"
OPENAPI = SCHEMAS / "openapi.json"


def schema_of(cls: type[Any]) -> dict[str, Any]:
    """A self-contained JSON Schema for one struct; an event's `$id` is its `dataschema`."""
    schema: dict[str, Any] = msgspec.json.schema(cls)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = cls.__name__
    if isinstance(cls, type) and issubclass(cls, Event):
        schema["$id"] = schema_uri(type_of(cls))
    return schema


def file_name(cls: type[Message]) -> str:
    """File a struct's schema is kept in."""
    return f"{type_of(cls)}.json"


def channel_of(cls: type[Message]) -> str:
    """The subject a message type is published on (with an {app} parameter for events)."""
    if issubclass(cls, Event):
        return subjects.event("{app}", cls.topic, cls.outcome)
    # getattr: only commands have `subject` (a ClassVar); Message's type has none.
    return str(getattr(cls, "subject"))  # noqa: B009


def _name(cls: type[Message]) -> str:
    return type_of(cls).removeprefix("dockyard.").replace(".", "_")


def _received(on: On) -> list[type[Message]]:
    if on.message is None:
        return list(EVENT_TYPES)
    return [on.message]


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3 document: every subject, and which service sends or receives it."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for cls in (*COMMAND_TYPES, *EVENT_TYPES):
        name = _name(cls)
        address = channel_of(cls)
        channel: dict[str, Any] = {
            "address": address,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        if "{app}" in address:
            channel["parameters"] = {"app": {"description": "the app's name"}}
        channels[name] = channel
        is_event = issubclass(cls, Event)
        messages[name] = {
            "name": type_of(cls),
            "title": cls.__name__,
            "summary": (cls.__doc__ or "").strip(),
            "contentType": "application/cloudevents+json" if is_event else "application/json",
            "payload": {"$ref": f"./json/{file_name(cls)}"},
        }
    for service_name in SERVICES:
        service = declaration(service_name)
        for cls in service.publishes:
            operations[f"{service_name}_sends_{_name(cls)}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{_name(cls)}"},
                "summary": f"{service_name} publishes {type_of(cls)}"}
        for on in service.subscribes:
            for cls in _received(on):
                operations[f"{service_name}_receives_{_name(cls)}"] = {
                    "action": "receive", "channel": {"$ref": f"#/channels/{_name(cls)}"},
                    "summary": f"{service_name} consumes {type_of(cls)} "
                               f"(durable {on.durable(service_name)})"}
    channels["log"] = {
        "address": subjects.log("{deployment_id}"),
        "parameters": {"deployment_id": {"description": "the deployment's id"}},
        "messages": {"log_line": {"$ref": "#/components/messages/log_line"}},
    }
    messages["log_line"] = {"name": "LogLine", "contentType": "application/json",
                            "payload": {"$ref": "./json/log_line.json"}}
    channels["app_log"] = {
        "address": subjects.applog("{app}", "{process}", "{instance}"),
        "parameters": {"app": {"description": "the app"},
                       "process": {"description": "the instance's process type"},
                       "instance": {"description": "the instance's id"}},
        "messages": {"app_log_line": {"$ref": "#/components/messages/app_log_line"}},
    }
    messages["app_log_line"] = {"name": "AppLogLine", "contentType": "application/json",
                                "payload": {"$ref": "./json/app_log_line.json"}}
    channels["dead_letters"] = {
        "address": subjects.dlq("{service}"),
        "parameters": {"service": {"description": "the service that rejected the message"}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Dockyard", "version": str(CONTRACT_VERSION),
                 "description": "Deploy commands, pipeline events (structured-mode CloudEvents "
                                "1.0) and live deploy output on NATS."},
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages},
    }


def rendered() -> dict[Path, str]:
    """Every generated file and its exact text."""
    files = {JSON_DIR / file_name(cls): schema_of(cls) for cls in (*COMMAND_TYPES, *EVENT_TYPES)}
    files[JSON_DIR / "log_line.json"] = schema_of(LogLine)
    files[JSON_DIR / "app_log_line.json"] = schema_of(AppLogLine)
    files[ASYNCAPI] = asyncapi()
    files[OPENAPI] = openapi_document()
    return {path: json.dumps(doc, indent=2, sort_keys=True) + "\n" for path, doc in files.items()}


def main() -> int:
    """Write the files; `--check` only reports whether they are stale."""
    check = "--check" in sys.argv
    texts = rendered()
    stale = [p for p, text in texts.items() if not p.exists() or p.read_text() != text]
    if check:
        for p in stale:
            print(f"stale: {p}")
        return 1 if stale else 0
    JSON_DIR.mkdir(parents=True, exist_ok=True)
    for old in JSON_DIR.glob("*.json"):
        if old not in texts:
            old.unlink()
    for path, text in texts.items():
        path.write_text(text)
    print(f"wrote {len(texts)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
