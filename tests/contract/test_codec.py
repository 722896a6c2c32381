"""Encoding and decoding everything on the bus, by its `type` tag."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from dockyard.contract import codec
from dockyard.contract.events import (
    EVENT_TYPES,
    BuildFailed,
    CancelRequested,
    DeployRequested,
    Event,
)
from dockyard.contract.state import Queue
from tests.contract.samples import sample_event


@pytest.mark.parametrize("cls", EVENT_TYPES)
def test_every_event_decodes_as_its_own_type(cls: type[Event[Any]]) -> None:
    event = sample_event(cls)
    data = codec.encode(event)
    assert json.loads(data)["type"] == event.type
    assert codec.decode_event(data) == event
    assert codec.decode_any(data) == event
    assert type(codec.decode_event(data)) is cls


def test_commands_decode_as_commands() -> None:
    deploy = DeployRequested(deployment_id="d", app="shop", source_object="shop/d.tar.gz")
    cancel = CancelRequested(deployment_id="d", app="shop")
    for command in (deploy, cancel):
        assert codec.decode_command(codec.encode(command)) == command
        assert codec.decode_any(codec.encode(command)) == command
    assert json.loads(codec.encode(cancel)) == {
        "type": "dockyard.cmd.cancel", "deployment_id": "d", "app": "shop",
        "reason": "cancelled by user"}


def test_a_command_is_not_an_event_nor_an_event_a_command() -> None:
    command = codec.encode(CancelRequested(deployment_id="d", app="shop"))
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'dockyard.cmd.cancel'"):
        codec.decode_event(command)
    with pytest.raises(msgspec.ValidationError):
        codec.decode_command(codec.encode(sample_event(BuildFailed)))


def test_garbage_and_unknown_types_are_refused() -> None:
    with pytest.raises(msgspec.DecodeError):
        codec.decode_any(b"{not json")
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'dockyard.nope'"):
        codec.decode_any(b'{"type": "dockyard.nope"}')
    with pytest.raises(msgspec.ValidationError, match="missing required field"):
        codec.decode_any(b'{"type": "dockyard.cmd.deploy"}')


def test_decode_as_one_given_type() -> None:
    assert codec.decode_as(codec.encode(Queue()), Queue) == Queue()
    with pytest.raises(msgspec.ValidationError):
        codec.decode_as(b'{"entries": 3}', Queue)
