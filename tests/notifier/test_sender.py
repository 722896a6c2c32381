"""POSTing to a real local receiver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from dockyard.bus.embedded import free_port
from dockyard.contract.state import AttemptResult
from dockyard.notifier.sender import Sender

MakeReceiver = Callable[..., Awaitable[Any]]


async def test_posts_body_and_headers(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory()
    sender = Sender(httpx.AsyncClient())
    try:
        result = await sender.post(receiver.url, b'{"a":1}', {"webhook-id": "m1"},
                                   request_timeout=5)
    finally:
        await sender.close()
    assert result == AttemptResult(status_code=200)
    [got] = receiver.requests
    assert got.path == "/hook" and got.body == b'{"a":1}'
    assert got.headers["webhook-id"] == "m1"
    assert got.headers["content-type"] == "application/json"


async def test_error_status_is_reported(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(lambda n: 503)
    sender = Sender(httpx.AsyncClient())
    try:
        result = await sender.post(receiver.url, b"{}", {}, request_timeout=5)
    finally:
        await sender.close()
    assert result == AttemptResult(status_code=503) and not result.ok


async def test_unreachable_sink_is_an_error_without_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0/SECRET-TOKEN"
    sender = Sender(httpx.AsyncClient())
    try:
        result = await sender.post(url, b"{}", {}, request_timeout=5)
    finally:
        await sender.close()
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("ConnectError")
    assert "SECRET-TOKEN" not in result.error


async def test_a_url_httpx_cannot_use_is_an_error_not_an_exception() -> None:
    """A stored URL that slipped past validation must not raise into the handler (tracebacks,
    redeliveries, a dead letter): it is the sink's problem, reported as the attempt's error."""
    sender = Sender(httpx.AsyncClient())
    try:
        result = await sender.post("http://127.0.0.1:80\x7f/hook", b"{}", {}, request_timeout=5)
    finally:
        await sender.close()
    assert result.status_code is None and result.error is not None
    assert result.error.startswith("InvalidURL")
