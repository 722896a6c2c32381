"""Encoding and decoding of everything on the bus."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from dockyard.contract.events import (
    AnyEvent,
    CancelRequested,
    DeployRequested,
    DestroyRequested,
    Message,
)

AnyCommand = DeployRequested | CancelRequested | DestroyRequested

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_command_decoder: msgspec.json.Decoder[AnyCommand] = msgspec.json.Decoder(AnyCommand)


def encode(message: Message | msgspec.Struct) -> bytes:
    """JSON bytes of a message."""
    return _encoder.encode(message)


def decode_event(data: bytes) -> AnyEvent:
    """Decode any event by its `type` tag; raises msgspec.DecodeError/ValidationError."""
    return _event_decoder.decode(data)


def decode_command(data: bytes) -> AnyCommand:
    """Decode any command by its `type` tag."""
    return _command_decoder.decode(data)


def decode_as(data: bytes, type_: type[T]) -> T:
    """Decode bytes as one given type."""
    return msgspec.json.decode(data, type=type_)


_any_decoder: msgspec.json.Decoder[AnyEvent | AnyCommand] = (
    msgspec.json.Decoder(AnyEvent | AnyCommand))


def decode_any(data: bytes) -> AnyEvent | AnyCommand:
    """Decode any event or command by its `type` tag."""
    return _any_decoder.decode(data)
