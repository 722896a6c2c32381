"""Encoding and decoding of everything on the bus."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from dockyard.contract.events import (
    AnyEvent,
    CancelRequested,
    DeployRequested,
    DestroyRequested,
    Message,
    RunRequested,
    ScaleRequested,
)
from dockyard.contract.text import one_line

AnyCommand = DeployRequested | CancelRequested | RunRequested | ScaleRequested | DestroyRequested

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_command_decoder: msgspec.json.Decoder[AnyCommand] = msgspec.json.Decoder(AnyCommand)


def encode(message: Message | msgspec.Struct) -> bytes:
    """JSON bytes of a message."""
    return _encoder.encode(message)


def _decoded(decode: Callable[[bytes], T], data: bytes) -> T:
    """decode(data), its DecodeError (or ValidationError) on one line: msgspec quotes a bad tag
    as it came, line breaks and all; nesting past the recursion limit is a DecodeError too."""
    try:
        return decode(data)
    except RecursionError:
        raise msgspec.DecodeError("JSON is malformed: arrays or objects nest too deeply") from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        if message.isprintable():
            raise
        raise type(exc)(one_line(message)) from None


def decode_event(data: bytes) -> AnyEvent:
    """Decode any event by its `type` tag; raises msgspec.DecodeError/ValidationError."""
    return _decoded(_event_decoder.decode, data)


def decode_command(data: bytes) -> AnyCommand:
    """Decode any command by its `type` tag."""
    return _decoded(_command_decoder.decode, data)


def decode_as(data: bytes, type_: type[T]) -> T:
    """Decode bytes as one given type."""
    return _decoded(lambda d: msgspec.json.decode(d, type=type_), data)


_any_decoder: msgspec.json.Decoder[AnyEvent | AnyCommand] = (
    msgspec.json.Decoder(AnyEvent | AnyCommand))


def decode_any(data: bytes) -> AnyEvent | AnyCommand:
    """Decode any event or command by its `type` tag."""
    return _decoded(_any_decoder.decode, data)
