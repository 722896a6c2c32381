"""Generate the JSON Schema of every message and the AsyncAPI document (`python -m dockyard.schemas.generate`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from dockyard.schemas import subjects
from dockyard.schemas.events import COMMAND_TYPES, EVENT_TYPES, LogLine, Message, type_of

HERE = Path(__file__).parent
JSON_DIR = HERE / "json"
ASYNCAPI = HERE / "asyncapi.json"


def schema_of(cls: type[Any]) -> dict[str, Any]:
    """A self-contained JSON Schema for one struct."""
    schema: dict[str, Any] = msgspec.json.schema(cls)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = cls.__name__
    return schema


def file_name(cls: type[Message]) -> str:
    """File a struct's schema is kept in."""
    return f"{type_of(cls)}.json"


def channel_of(cls: type[Message]) -> str:
    """The subject a message type is published on (with {app}/{deployment_id} parameters)."""
    if cls in COMMAND_TYPES:
        return str(getattr(cls, "subject"))
    return subjects.event("{app}", getattr(cls, "phase"), getattr(cls, "outcome"))


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3 document of every subject Dockyard uses."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for cls in (*COMMAND_TYPES, *EVENT_TYPES):
        name = type_of(cls).removeprefix("dockyard.").replace(".", "_")
        address = channel_of(cls)
        channel: dict[str, Any] = {
            "address": address,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        if "{app}" in address:
            channel["parameters"] = {"app": {"description": "the app's name"}}
        channels[name] = channel
        messages[name] = {
            "name": type_of(cls),
            "title": cls.__name__,
            "summary": (cls.__doc__ or "").strip(),
            "contentType": "application/json",
            "payload": {"$ref": f"./json/{file_name(cls)}"},
        }
        operations[f"on_{name}"] = {"action": "receive", "channel": {"$ref": f"#/channels/{name}"}}
    channels["log"] = {
        "address": subjects.log("{deployment_id}"),
        "parameters": {"deployment_id": {"description": "the deployment's id"}},
        "messages": {"log_line": {"$ref": "#/components/messages/log_line"}},
    }
    messages["log_line"] = {"name": "LogLine", "contentType": "application/json",
                            "payload": {"$ref": "./json/log_line.json"}}
    channels["dead_letters"] = {
        "address": subjects.dlq("{service}"),
        "parameters": {"service": {"description": "the service that rejected the message"}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Dockyard", "version": "1",
                 "description": "Deploy commands, pipeline events and live deploy output on NATS."},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered() -> dict[Path, str]:
    """Every generated file and its exact text."""
    files = {JSON_DIR / file_name(cls): schema_of(cls) for cls in (*COMMAND_TYPES, *EVENT_TYPES)}
    files[JSON_DIR / "log_line.json"] = schema_of(LogLine)
    files[ASYNCAPI] = asyncapi()
    return {path: json.dumps(doc, indent=2, sort_keys=True) + "\n" for path, doc in files.items()}


def main() -> int:
    """Write the files; `--check` only reports whether they are stale."""
    check = "--check" in sys.argv
    stale = [p for p, text in rendered().items() if not p.exists() or p.read_text() != text]
    if check:
        for p in stale:
            print(f"stale: {p}")
        return 1 if stale else 0
    JSON_DIR.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
    print(f"wrote {len(rendered())} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
